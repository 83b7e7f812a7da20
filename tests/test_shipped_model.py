"""The model the package ships: it loads, its card says what it is and where its data came
from, and it judges the bundled sample survey of real photos it never trained on. Runs from
a plain checkout: the model and the sample are in the repository."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from crackscan.model_card import ModelCard, model_version, read_card
from pipeline import demo, score
from pipeline.inference import SHIPPED_MODEL_DIR

MAX_SHIPPED_BYTES = 12 * 2**20


def test_shipped_model_is_a_small_litert_folder_with_a_complete_card():
    card = read_card(SHIPPED_MODEL_DIR)
    files = sorted(p.name for p in Path(SHIPPED_MODEL_DIR).iterdir())
    assert files == ["model.tflite", "model_card.json"]
    assert sum(p.stat().st_size for p in Path(SHIPPED_MODEL_DIR).iterdir()) < MAX_SHIPPED_BYTES
    spec = ModelCard.read(SHIPPED_MODEL_DIR)
    assert spec.model_uri is None and spec.tflite_uri.endswith("model.tflite")
    assert spec.tiles_needed == card["photo_rule"]["tiles_needed"] >= 1
    sources = {s["name"]: s for s in card["training_sources"]}
    assert {"concrete", "uavcrack", "uav75", "wallseg", "shadowcrack", "masonry-dais"} <= set(
        sources)
    assert all(s["licence"] and not s["licence"].startswith("not stated")
               for s in sources.values())
    assert "CC BY 4.0" in sources["concrete"]["licence"]
    commands = card["reproduce"]
    builds = [c for c in commands if c.startswith("python -m training.build_dataset")]
    trains = [c for c in commands if c.startswith("python -m training.train")]
    assert commands[0] in builds and commands[-1] in trains
    assert len(builds) + len(trains) == len(commands)
    assert all("--source" in build for build in builds)

    def option(command: str, flag: str) -> str:
        return command.split(f"{flag} ")[1].split()[0]

    # Every training reads a data set an earlier command built, and a student's teachers
    # are made by the commands before its own, not taken from the shipped folder, which
    # holds the student itself.
    for index, command in enumerate(commands):
        if command in trains:
            assert option(command, "--data") in [option(c, "--output")
                                                  for c in builds if commands.index(c) < index]
    made = [option(train, "--output") for train in trains[:-1]]
    for teacher in (card.get("teachers") or {}).get("models", []):
        assert teacher["model"] in made and f"--teacher {teacher['model']}" in trains[-1]
    for name in sources:
        figures = card["metrics_by_source"]["test"][name]
        assert figures["counts"]["total"] > 0 and 0 <= figures["accuracy"] <= 1


def test_scoring_without_model_uses_the_shipped_model(tmp_path: Path):
    output = tmp_path / "out"
    summary = score.run(["--input", demo.PHOTOS_DIR, "--output", str(output)])
    version = model_version(read_card(SHIPPED_MODEL_DIR))
    assert summary["model_version"] == version
    rows = [row for path in output.glob("predictions-*.csv")
            for row in csv.DictReader(path.open())]
    assert len(rows) == summary["scored"] == len(demo.read_truth())
    assert {row["model_version"] for row in rows} == {version}


def test_keras_runtime_is_refused_on_a_litert_only_model(tmp_path: Path):
    with pytest.raises(score.SetupError, match="holds no model.keras"):
        score.run(["--input", demo.PHOTOS_DIR, "--output", str(tmp_path / "out"),
                   "--runtime", "keras"])


def test_demo_judges_the_bundled_real_photos_correctly(tmp_path: Path, capsys):
    result = demo.main(["--output", str(tmp_path / "demo")])
    summary = result["summary"]
    assert summary["seen"] == summary["scored"] == result["photos"] == 14
    assert summary["accounting_ok"] is True
    assert result["correct"] == result["photos"]
    out = capsys.readouterr().out
    assert f"{result['photos']} of {result['photos']} verdicts match" in out
    assert (tmp_path / "demo" / "report.html").stat().st_size > 1000
    tiles = [json.loads(line) for path in (tmp_path / "demo").glob("tiles-*.jsonl")
             for line in path.read_text().splitlines()]
    assert len(tiles) == sum(int(row["tiles"]) for row in demo.read_rows(
        str(tmp_path / "demo")).values())


def test_shipped_model_on_photos_from_crack_sets_it_never_saw(tmp_path: Path, shared_dir: Path):
    """The 448 px photos of ``../shared/data/survey`` come from public crack sets outside the
    training data (CRACK500, GAPs, intact concrete walls with joints): the floor the shipped
    model holds there, 8 of 12 cracked photos found and 5 of 12 intact walls flagged, the
    flagged ones all walls of formwork boards, panels or tiles."""
    photos = tmp_path / "photos"
    for kind in ("crack", "no_crack"):
        (photos / kind).mkdir(parents=True)
        for path in (shared_dir / "data" / "survey" / kind).glob("*.jpg"):
            if path.stat().st_size < 500_000:  # the two 4800x6000 photos are other tests'
                (photos / kind / path.name).write_bytes(path.read_bytes())
    summary = score.run(["--input", str(photos), "--output", str(tmp_path / "out")])
    assert summary["scored"] == summary["seen"] == 24
    verdicts = [(Path(row["uri"]).parent.name, row["label"])
                for path in (tmp_path / "out").glob("predictions-*.csv")
                for row in csv.DictReader(path.open())]
    assert sum(v == ("crack", "Positive") for v in verdicts) >= 8
    assert sum(v == ("no_crack", "Positive") for v in verdicts) <= 5
