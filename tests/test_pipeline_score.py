"""End-to-end runs of ``pipeline.score`` on the DirectRunner, over real shared photos.

Each test runs the real pipeline (real files, real archives, a real Keras model) and reads
what it wrote. The trained model from ``conftest`` is used where the scores must mean
something; a tiny throwaway model keeps the other runs fast.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from crackscan.decode import decode_rgb
from crackscan.model_card import ModelCard, ModelCardError, read_card, write_card
from crackscan.sources import SourceError
from crackscan.tiles import resize
from pipeline.score import SetupError, local_defaults, run
from pipeline.run_config import RunConfig
from pipeline.summary import AccountingError, WriteSummaryFn
from scoring_helpers import (concrete, copy_files, encoded, field_photos, png_declaring,
                             read_jsonl, read_predictions, score)

REPO = Path(__file__).resolve().parents[1]
SURVEY_PHOTO = Path("data/survey/crack/CRACK500_20160328_153612_1281_1081.jpg")
# The other 4800x6000 photo is cut off at 2,931,200 bytes, without its end-of-image marker.
TRUNCATED_SURVEY_PHOTO = Path("data/survey/crack/CRACK500_20160330_165325_1921_361.jpg")
SURVEY_448 = Path("data/survey/crack/GAPS384_train_0959_1_641.jpg")
INTACT_448 = Path("data/survey/no_crack/noncrack_noncrack_concrete_wall_12_9.jpg.jpg")
TOLERANCE = 1e-5  # six written decimals plus float32 noise between batch compositions
# These runs check the pipeline against Keras itself at TOLERANCE, so they run on Keras;
# LiteRT (the default when the model has a .tflite) is held to 1e-4 of Keras in
# test_litert_runtime.py.
KERAS = ("--runtime", "keras")


# --------------------------------------------------------------------------- helpers


def read_errors(out: Path) -> dict[str, dict]:
    errors = {row["uri"]: row for row in read_jsonl(out, "errors")}
    assert len(errors) == len(read_jsonl(out, "errors")), "an input has two error rows"
    return errors


def assert_accounted(summary: dict, out: Path, seen: int) -> None:
    predictions, errors = read_predictions(out), read_errors(out)
    assert not set(predictions) & set(errors), "an input is both scored and failed"
    assert summary["seen"] == seen
    assert summary["scored"] == len(predictions)
    assert summary["failed"] == len(errors)
    assert summary["seen"] == summary["scored"] + summary["failed"]
    assert summary["accounting_ok"] is True
    assert json.loads((out / "summary.json").read_text()) == summary
    assert "accounted for" in (out / "report.html").read_text()


# --------------------------------------------------------------------------- real model


def test_full_concrete_set_matches_the_models_own_evaluation(
        tmp_path: Path, shared_dir: Path, trained_model_dir: Path):
    """All 4,000 images: one row each, and the test split scores as training evaluated it."""
    concrete_dir = shared_dir / "data" / "concrete"
    out = tmp_path / "out"
    summary = score("--input", concrete_dir, "--model", trained_model_dir, "--output", out,
                    *KERAS)

    files = sorted(str(path) for path in concrete_dir.glob("*/*.jpg"))
    assert_accounted(summary, out, seen=len(files))
    rows = read_predictions(out)
    assert sorted(rows) == files
    assert summary["failed"] == 0

    card = read_card(str(trained_model_dir))
    correct = {uri: (row["label"] == Path(uri).parent.name) for uri, row in rows.items()}
    accuracy = sum(correct.values()) / len(correct)

    # The model's own evaluation: its test split, scored by the training code.
    evaluated = json.loads((trained_model_dir / "test_predictions.json").read_text())
    by_sha = {row["sha256"]: row for row in rows.values()}
    test_rows = [by_sha[entry["sha256"]] for entry in evaluated]
    for entry, row in zip(evaluated, test_rows):
        assert abs(float(row["crack_probability"]) - entry["crack_probability"]) < TOLERANCE
    test_accuracy = np.mean([row["label"] == Path(row["uri"]).parent.name for row in test_rows])
    assert test_accuracy == pytest.approx(card["metrics"]["test"]["accuracy"], abs=1e-12)
    assert accuracy > 0.95
    print(f"\nfull concrete run: {len(rows)} images, accuracy {accuracy:.4f} "
          f"(test split {test_accuracy:.4f}), {summary['images_per_second']:.1f} images/s, "
          f"{summary['wall_seconds']:.1f} s")


@pytest.fixture(scope="module")
def survey_run(shared_dir: Path, trained_model_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Survey photos (one truncated), a 448 px photo, a tile-sized and a smaller image."""
    inputs = tmp_path_factory.mktemp("survey-inputs")
    small = inputs / "small.png"
    with Image.open(concrete(shared_dir, "Positive", 1)[0]) as image:
        image.resize((100, 150)).save(small)
    out = tmp_path_factory.mktemp("survey-run") / "out"
    summary = score("--input", shared_dir / SURVEY_PHOTO,
                    "--input", shared_dir / TRUNCATED_SURVEY_PHOTO,
                    "--input", shared_dir / SURVEY_448,
                    "--input", concrete(shared_dir, "Positive", 1)[0], "--input", small,
                    "--model", trained_model_dir, "--output", out, "--write-tiles", *KERAS)
    return out, summary


@pytest.mark.shared("4800x6000 survey photos, one truncated, and a model trained on the 4,000 "
                    "shared concrete images")
def test_survey_photo_is_tiled_and_scored(survey_run: tuple[Path, dict], shared_dir: Path):
    out, summary = survey_run
    assert_accounted(summary, out, seen=5)
    truncated = read_errors(out)[str(shared_dir / TRUNCATED_SURVEY_PHOTO)]
    assert truncated["stage"] == "decode" and "truncated" in truncated["error"]
    uri = str(shared_dir / SURVEY_PHOTO)
    row = read_predictions(out)[uri]
    tiles = sorted((t for t in read_jsonl(out, "tiles") if t["uri"] == uri),
                   key=lambda t: t["tile"])
    assert (row["width"], row["height"], row["tiles"]) == ("4800", "6000", "980")
    assert [t["tile"] for t in tiles] == list(range(980))
    covered = np.zeros((6000, 4800), dtype=bool)
    for tile in tiles:
        x0, y0, x1, y1 = tile["box"]
        assert 0 <= x0 and 0 <= y0 and x1 <= 4800 and y1 <= 6000
        assert (x1 - x0, y1 - y0) == (227, 227)
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    probabilities = [t["crack_probability"] for t in tiles]
    threshold = float(row["threshold"])
    assert float(row["crack_probability"]) == max(probabilities)
    assert int(row["positive_tiles"]) == sum(p >= threshold for p in probabilities)
    assert row["label"] == "Positive", "a CRACK500 photo with a visible crack"
    assert summary["tiles"] == 980 + 9 + 1 + 1


def test_pipeline_gives_each_tile_the_probability_the_model_gives_it(
        survey_run: tuple[Path, dict], trained_model_dir: Path, shared_dir: Path):
    out, _ = survey_run
    model = keras.saving.load_model(trained_model_dir / "model.keras")
    survey = str(shared_dir / SURVEY_PHOTO)
    # Every tile of the small inputs, every 50th of the survey photo (same code path).
    tiles = [t for t in read_jsonl(out, "tiles") if t["uri"] != survey or t["tile"] % 50 == 0]
    assert len(tiles) == 9 + 1 + 1 + 20
    decoded: dict[str, np.ndarray] = {}
    for tile in tiles:
        if tile["uri"] not in decoded:
            decoded[tile["uri"]] = decode_rgb(Path(tile["uri"]).read_bytes())
        rgb = decoded[tile["uri"]]
        x0, y0, x1, y1 = tile["box"]
        if rgb.shape[:2] == (150, 100):  # smaller than a tile: scored whole, resized
            # (as training resizes it: tests/test_pipeline_tiling.py)
            pixels = resize(rgb, 227, 227)
        else:
            pixels = rgb[y0:y1, x0:x1]
        direct = float(model.predict_on_batch(pixels[None].astype(np.float32))[0, 1])
        assert abs(tile["crack_probability"] - direct) < TOLERANCE, tile


# --------------------------------------------------------------------------- inputs


def build_corpus(root: Path, real_data: Path
                 ) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[str, str]]]:
    """Good inputs ``{uri: (width, height)}`` and bad ones ``{uri: (stage, reason)}``."""
    with Image.open(concrete(real_data, "Positive", 1)[0]) as image:
        rgb = image.convert("RGB")
    # A real 256 px drone tile of a bridge deck, scaled to a 448 px survey photo.
    with Image.open(field_photos(real_data, "uavcrack", 1)[0]) as image:
        photo = image.convert("RGB").resize((448, 448), Image.Resampling.BICUBIC)
    gray = rgb.convert("L")
    sixteen_bit = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    rotated = photo.crop((0, 0, 300, 200))
    jpeg = encoded(rgb, "JPEG", quality=95)

    files = {
        "nested/a/rgb.png": (encoded(rgb, "PNG"), (227, 227)),
        "nested/a/b/gray16.tiff": (encoded(sixteen_bit, "TIFF"), (227, 227)),
        "nested/bitmap.bmp": (encoded(rgb, "BMP"), (227, 227)),
        "nested/photo.webp": (encoded(photo.crop((0, 0, 300, 300)), "WEBP"), (300, 300)),
        "cmyk.jpg": (encoded(rgb.convert("CMYK"), "JPEG"), (227, 227)),
        "palette.png": (encoded(rgb.convert("P"), "PNG"), (227, 227)),
        "rgba.png": (encoded(rgba, "PNG"), (227, 227)),
        "gray.jpg": (encoded(gray, "JPEG"), (227, 227)),
        "rotated.jpg": (encoded(rotated, "JPEG", exif=exif), (200, 300)),
        "small.png": (encoded(rgb.resize((90, 60)), "PNG"), (90, 60)),
        "sliver.png": (encoded(rgb.resize((2, 40_000)), "PNG"), None),
        "photo448.jpg": (encoded(photo, "JPEG"), None),
        "bad/empty.jpg": (b"", None),
        "bad/truncated.jpg": (jpeg[: len(jpeg) // 2], None),
        "bad/text.jpg": (b"these are flight notes, not a photo\n", None),
        "bad/bomb.png": (png_declaring(100_000, 100_000), None),
    }
    good: dict[str, tuple[int, int]] = {}
    bad: dict[str, tuple[str, str]] = {
        "bad/empty.jpg": ("decode", "empty file"),
        "bad/truncated.jpg": ("decode", "truncated"),
        "bad/text.jpg": ("decode", "not an image"),
        "bad/bomb.png": ("decode", "decompression bomb"),
        "photo448.jpg": ("decode", "over the 150000-pixel limit"),
        "sliver.png": ("tile", "too narrow to tile"),
    }
    for name, (data, size) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if size is not None:
            good[str(path)] = size
    bad = {str(root / name): reason for name, reason in bad.items()}

    zip_path = root / "archives" / "flight1.zip"
    zip_path.parent.mkdir()
    with zipfile.ZipFile(zip_path, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the duplicate name is the point
        archive.writestr("flight1/img1.jpg", jpeg)
        archive.writestr("flight1/sub/img2.png", encoded(rgb, "PNG"))
        archive.writestr("../evil.jpg", jpeg)
        archive.writestr("/abs.jpg", jpeg)
        archive.writestr("flight1/readme.jpg", b"not a photo")
        archive.writestr("flight1/img1.jpg", jpeg)
    good.update({f"{zip_path}!flight1/img1.jpg": (227, 227),
                 f"{zip_path}!flight1/sub/img2.png": (227, 227)})
    bad.update({f"{zip_path}!../evil.jpg": ("read", "'..' escapes the archive"),
                f"{zip_path}!/abs.jpg": ("read", "absolute path"),
                f"{zip_path}!flight1/readme.jpg": ("decode", "not an image")})

    tar_path = root / "archives" / "flight2.tar.gz"
    with tarfile.open(tar_path, "w:gz") as archive:
        def add(name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> None:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "img3.jpg"
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        add("flight2/img3.jpg", jpeg)
        add("flight2/deep/er/img4.webp", encoded(rgb, "WEBP"))
        add("../evil.jpg", jpeg)
        add("/etc/abs.jpg", jpeg)
        add("flight2/link.jpg", b"", tarfile.SYMTYPE)
    good.update({f"{tar_path}!flight2/img3.jpg": (227, 227),
                 f"{tar_path}!flight2/deep/er/img4.webp": (227, 227)})
    bad.update({f"{tar_path}!../evil.jpg": ("read", "'..' escapes the archive"),
                f"{tar_path}!/etc/abs.jpg": ("read", "absolute path"),
                f"{tar_path}!flight2/link.jpg": ("read", "link or device")})
    return good, bad


def test_formats_archives_and_bad_inputs_each_land_in_one_place(
        tmp_path: Path, real_data: Path, tiny_model_dir: Path):
    root = tmp_path / "survey"
    good, bad = build_corpus(root, real_data)
    out = tmp_path / "out"
    # The second pattern names files the first already lists: each is read once.
    summary = score("--input", root, "--input", root / "*.png", "--model", tiny_model_dir,
                    "--output", out, "--max-pixels", "150000")

    predictions, errors = read_predictions(out), read_errors(out)
    assert set(predictions) == set(good)
    for uri, (width, height) in good.items():
        assert (int(predictions[uri]["width"]), int(predictions[uri]["height"])) == (
            width, height), uri
    # The duplicated zip member is a 28th input with a uri of its own: it must be an error
    # row of its own, so it is checked apart from the uri-keyed dict.
    duplicate = [row for row in read_jsonl(out, "errors")
                 if "duplicate archive member name" in row["error"]]
    assert [row["uri"] for row in duplicate] == [
        f"{root}/archives/flight1.zip!flight1/img1.jpg!2"]
    errors = {uri: row for uri, row in errors.items() if row not in duplicate}
    assert set(errors) == set(bad)
    for uri, (stage, reason) in bad.items():
        assert errors[uri]["stage"] == stage, errors[uri]
        assert reason in errors[uri]["error"], errors[uri]

    seen = len(good) + len(bad) + 1
    assert summary["seen"] == seen
    assert summary["scored"] == len(good) and summary["failed"] == len(bad) + 1
    assert summary["failed_by_stage"] == {"read": 6, "decode": 6, "tile": 1, "inference": 0,
                                          "mask": 0, "write-mask": 0}
    assert summary["accounting_ok"] is True


# --------------------------------------------------------------------------- runners, reuse


def test_direct_runner_defaults_to_a_worker_process_per_core():
    cores = os.cpu_count() or 1
    pool = ["--direct_running_mode=multi_processing", f"--direct_num_workers={cores}"]
    assert local_defaults([]) == (pool if cores > 1 else [])
    assert local_defaults(["--direct_num_workers=3"]) == [
        "--direct_num_workers=3", "--direct_running_mode=multi_processing"]
    for chosen in (["--direct_running_mode=in_memory"], ["--direct_num_workers=1"],
                   ["--runner=DataflowRunner", "--project=p"]):
        assert local_defaults(chosen) == chosen


def test_default_worker_pool_gives_the_same_rows_as_in_memory(
        tmp_path: Path, real_data: Path, tiny_model_dir: Path,
        monkeypatch: pytest.MonkeyPatch):
    # Worker processes import the pipeline by module name, like launch/common.sh sets up.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    inputs = tmp_path / "inputs"
    copy_files(concrete(real_data, "Positive", 12), inputs / "Positive")
    copy_files(concrete(real_data, "Negative", 12), inputs / "Negative")
    copy_files(field_photos(real_data, "uavcrack", 2), inputs)  # 256 px: tiled
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    with zipfile.ZipFile(inputs / "more.zip", "w") as archive:
        for path in concrete(real_data, "Positive", 20)[12:]:
            archive.write(path, f"zipped/{path.name}")

    def outputs(out: Path) -> tuple:
        rows = {uri: {k: v for k, v in row.items() if k != "scored_at"}
                for uri, row in read_predictions(out).items()}
        tiles = sorted(read_jsonl(out, "tiles"), key=lambda t: (t["uri"], t["tile"]))
        summary = json.loads((out / "summary.json").read_text())
        counts = {key: summary[key] for key in ("seen", "scored", "failed", "positive", "tiles")}
        return rows, read_errors(out), tiles, counts

    common = ["--input", str(inputs), "--model", str(tiny_model_dir), "--write-tiles"]
    score(*common, "--output", tmp_path / "in-memory")
    # Nothing chosen: a worker process per core (two at least, so it is a pool here too).
    pool = [] if (os.cpu_count() or 1) > 1 else ["--direct_num_workers=2"]
    assert run([*common, "--output", str(tmp_path / "multi"), *pool]) is not None

    in_memory, multi = outputs(tmp_path / "in-memory"), outputs(tmp_path / "multi")
    assert len(in_memory[0]) == 24 + 2 + 8 and len(in_memory[1]) == 1
    assert in_memory == multi


def test_skip_scored_carries_earlier_rows_and_scores_only_new_content(
        tmp_path: Path, real_data: Path, tiny_model_dir: Path):
    first_inputs = copy_files(concrete(real_data, "Positive", 5), tmp_path / "night")
    first = tmp_path / "first"
    score("--input", tmp_path / "night", "--model", tiny_model_dir, "--output", first,
          "--format", "jsonl")
    earlier = {row["uri"]: row for row in read_jsonl(first, "predictions")}

    new_inputs = copy_files(concrete(real_data, "Negative", 3), tmp_path / "night" / "late")
    renamed = tmp_path / "night" / "renamed-copy.jpg"
    renamed.write_bytes(first_inputs[0].read_bytes())
    second = tmp_path / "second"
    summary = score("--input", tmp_path / "night", "--model", tiny_model_dir,
                    "--output", second, "--skip-scored", first)

    assert_accounted(summary, second, seen=9)
    assert summary["reused"] == 6 and summary["scored"] == 9
    assert summary["tiles"] == 3, "only the new content was tiled and scored"
    rows = read_predictions(second)
    for path in first_inputs:
        carried = {key: "" if value is None else str(value)
                   for key, value in earlier[str(path)].items()}
        assert rows[str(path)] == carried
    assert rows[str(renamed)] == {**rows[str(first_inputs[0])], "uri": str(renamed)}
    for path in new_inputs:
        assert rows[str(path)]["scored_at"] >= max(r["scored_at"] for r in earlier.values())

    # Same model file, re-calibrated threshold: labels may change, so nothing is reused.
    recalibrated = tmp_path / "recalibrated"
    recalibrated.mkdir()
    (recalibrated / "model.keras").write_bytes((tiny_model_dir / "model.keras").read_bytes())
    write_card(str(recalibrated), {**read_card(str(tiny_model_dir)), "threshold": 0.6})
    summary = score("--input", tmp_path / "night", "--model", recalibrated,
                    "--output", tmp_path / "third", "--skip-scored", second)
    assert summary["reused"] == 0 and summary["scored"] == 9


# --------------------------------------------------------------------------- refusals


def test_missing_or_tampered_model_is_refused_before_anything_runs(
        tmp_path: Path, tiny_model_dir: Path, real_data: Path):
    image = concrete(real_data, "Positive", 1)[0]
    out = tmp_path / "out"
    with pytest.raises(ModelCardError, match="model_card.json is missing"):
        run(["--input", str(image), "--model", str(tmp_path / "nowhere"), "--output", str(out)])

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in ("model.keras", "model_card.json"):
        (tampered / name).write_bytes((tiny_model_dir / name).read_bytes())
    with (tampered / "model.keras").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelCardError, match="does not match the sha256"):
        run(["--input", str(image), "--model", str(tampered), "--output", str(out)])
    assert not out.exists()


def test_inputs_and_output_are_checked_before_anything_runs(
        tmp_path: Path, tiny_model_dir: Path, real_data: Path):
    image = concrete(real_data, "Positive", 1)[0]
    with pytest.raises(SourceError, match="matches no file"):
        run(["--input", str(tmp_path / "*.jpg"), "--model", str(tiny_model_dir),
             "--output", str(tmp_path / "out")])
    with pytest.raises(SetupError, match="larger than the tile size"):
        run(["--input", str(image), "--model", str(tiny_model_dir),
             "--output", str(tmp_path / "out"), "--tile-stride", "300"])
    used = tmp_path / "used"
    used.mkdir()
    (used / "summary.json").write_text("{}")
    with pytest.raises(SetupError, match="already holds the output of a run"):
        run(["--input", str(image), "--model", str(tiny_model_dir), "--output", str(used)])
    assert not (tmp_path / "out").exists()


def test_accounting_mismatch_fails_the_run_after_writing_the_summary(
        tmp_path: Path, tiny_model_dir: Path):
    """The final step itself, fed counts that do not add up (one image lost on the way)."""
    spec = ModelCard.read(str(tiny_model_dir))
    facts = RunConfig(inputs=("in/",), output=str(tmp_path), model_dir=str(tiny_model_dir),
                      spec=spec, tile_size=227, tile_stride=170, max_pixels=10**8,
                      report_top=12, started=0.0)
    with pytest.raises(AccountingError, match="seen 3 != scored 1 \\+ failed 1"):
        list(WriteSummaryFn(facts).process(None, counts={"seen": 3, "scored": 1, "failed": 1},
                                           top=[], errors=[], files=[]))
    assert json.loads((tmp_path / "summary.json").read_text())["accounting_ok"] is False
    assert "Accounting mismatch" in (tmp_path / "report.html").read_text()


def test_command_line_reports_a_bad_model_dir_in_one_line(tmp_path: Path, real_data: Path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.score", "--input",
         str(concrete(real_data, "Positive", 1)[0]), "--model", str(tmp_path),
         "--output", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "pipeline.score: error:" in result.stderr and "is missing" in result.stderr
    assert "Traceback" not in result.stderr
