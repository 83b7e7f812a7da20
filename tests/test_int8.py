"""The int8 model: quantized on the data set, gated per source against the float file,
listed in the card only when it passed, and then the scorer's default.

Real conversions throughout (calibration, the quantization debugger, LiteRT) on a small
convolutional model trained for a few seconds on the checked-in concrete patches, so its
verdicts mean something; real pipeline runs for the scorer's choice.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
import pytest

from crackscan.model_card import ModelCard, ModelCardError, file_sha256, read_card, write_card
from pipeline.inference import LITERT, LITERT_INT8, LiteRTTileModelHandler
from pipeline.score import SetupError, run, runtime_for
from training import export_tflite, input_pipeline, int8_export
from training.int8_gate import GateLimits, SplitScores, gate

from scoring_helpers import read_predictions

TILE = 227  # the checked-in patches' size


def small_model() -> keras.Model:
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Resizing(64, 64)(inputs)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


@pytest.fixture(scope="module")
def trained(fixture_dataset: Path) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = small_model()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(input_pipeline.dataset(str(fixture_dataset), "train", 64, 16).repeat(),
              steps_per_epoch=6, epochs=12, verbose=0)
    return model


@pytest.fixture(scope="module")
def float_dir(trained: keras.Model, fixture_concrete_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder as training leaves it: model.keras, the checked float model.tflite and
    the card, before any int8 export."""
    folder = tmp_path_factory.mktemp("small-model")
    trained.save(folder / "model.keras")
    write_card(str(folder), {
        "class_names": ["Negative", "Positive"], "positive_class": "Positive",
        "input_size": 64, "tile_size": TILE, "threshold": 0.5,
        "model_file": "model.keras", "model_sha256": file_sha256(str(folder / "model.keras"))})
    export_tflite.add_to_model_dir(str(folder), fixture_concrete_dir, count=8)
    return folder


def copy_model_dir(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.fixture(scope="module")
def passed_dir(float_dir: Path, fixture_dataset: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The command a user runs on an existing model folder."""
    folder = copy_model_dir(float_dir, tmp_path_factory.mktemp("int8") / "passed")
    export_tflite.main(["--model", str(folder), "--int8", str(fixture_dataset)])
    return folder


@pytest.fixture(scope="module")
def refused_dir(float_dir: Path, fixture_dataset: Path, trained: keras.Model,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Calibrated on two black images: every activation range is collapsed, so real images
    saturate the int8 model. A stale int8 file from an earlier run lies in the folder."""
    folder = copy_model_dir(float_dir, tmp_path_factory.mktemp("int8") / "refused")
    (folder / "model_int8.tflite").write_bytes(b"an earlier run's file")
    card = int8_export.export_int8(trained, str(folder), read_card(str(folder)),
                                   str(fixture_dataset),
                                   (folder / "model.tflite").read_bytes(),
                                   calibration=np.zeros((2, TILE, TILE, 3), np.float32))
    write_card(str(folder), card)
    return folder


def test_gate_is_per_source_and_strict():
    """A flip costs a small source what a large one absorbs; a flip that fixes an error
    still counts."""
    labels = np.array([1] * 1000 + [1] * 400)
    sources = np.array(["large"] * 1000 + ["small"] * 400)
    float_scores = np.full(1400, 0.9)
    int8_scores = float_scores.copy()
    int8_scores[[0, 1000]] = 0.1  # one flip in each source, both now wrong
    scores = SplitScores(labels, sources, {"float": float_scores, "int8": int8_scores})
    report = gate(scores, "float", "int8", 0.5, GateLimits(max_accuracy_loss=0.002))
    large, small = report["by_source"]["large"], report["by_source"]["small"]
    assert (large["flips"], large["flip_rate"], large["passed"]) == (1, 0.001, True)
    assert (small["flips"], small["flip_rate"], small["passed"]) == (1, 0.0025, False)
    assert small["float_accuracy"] == 1.0 and small["int8_accuracy"] == 0.9975
    assert report["passed"] is False and report["all"]["flips"] == 2
    assert gate(scores, "float", "int8", 0.5)["by_source"]["large"]["passed"] is False, \
        "0.1 point lost on the large source is not less than the default 0.1 point"

    fixed = float_scores.copy()
    fixed[:2] = 0.1  # both were wrong under float, int8 gets them right
    scores = SplitScores(np.array([0, 0] + [1] * 998), np.array(["s"] * 1000),
                         {"float": np.full(1000, 0.9), "int8": fixed[:1000]})
    figures = gate(scores, "float", "int8", 0.5)["by_source"]["s"]
    assert figures["int8_accuracy"] > figures["float_accuracy"]
    assert figures["flips"] == 2 and figures["passed"] is False


def test_int8_that_passes_is_written_and_listed_with_the_gate_figures(
        passed_dir: Path, fixture_dataset: Path):
    card = read_card(str(passed_dir))  # also checks the int8 file's hash and format
    report = card["int8"]
    assert report["gate"]["passed"] is True
    assert card["int8_file"] == "model_int8.tflite"
    assert card["int8_sha256"] == file_sha256(str(passed_dir / "model_int8.tflite"))
    manifest = input_pipeline.read_manifest(str(fixture_dataset))
    test_counts = manifest["counts_by_source"]["test"]
    assert set(report["gate"]["by_source"]) == set(test_counts)
    for source, figures in report["gate"]["by_source"].items():
        assert figures["examples"] == test_counts[source]["total"]
        assert set(figures) >= {"float_accuracy", "int8_accuracy", "flips", "passed"}
        assert figures["passed"] and figures["flip_rate"] < 0.002
        assert figures["float_accuracy"] - figures["int8_accuracy"] < 0.001
    assert report["gate"]["threshold"] == card["threshold"]
    assert report["calibration"]["per_stream"] == {"concrete/0": 32, "concrete/1": 32}
    assert report["selection"]["split"] == "val" and report["selection"]["trials"]
    assert (passed_dir / "model_int8.tflite").stat().st_size < (
        passed_dir / "model.tflite").stat().st_size


def test_int8_that_fails_is_recorded_and_kept_out(refused_dir: Path):
    card = read_card(str(refused_dir))
    gate_report = card["int8"]["gate"]
    assert gate_report["passed"] is False
    assert [figures["passed"] for figures in gate_report["by_source"].values()] == [False]
    figures = gate_report["by_source"]["concrete"]
    assert figures["flips"] > 0 and figures["int8_accuracy"] < figures["float_accuracy"]
    assert "int8_file" not in card and "int8_sha256" not in card
    assert not (refused_dir / "model_int8.tflite").exists(), "the stale file must go"
    assert card["int8"]["calibration"]["per_stream"] == {"given": 2}


def runtime_args(model_dir: Path, runtime: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(model=str(model_dir), runtime=runtime)


def test_the_scorer_takes_the_int8_file_by_default_only_when_it_passed(
        passed_dir: Path, refused_dir: Path, float_dir: Path):
    passed = ModelCard.read(str(passed_dir))
    assert runtime_for(runtime_args(passed_dir), passed) == LITERT_INT8
    assert runtime_for(runtime_args(passed_dir, LITERT), passed) == LITERT
    for folder in (refused_dir, float_dir):
        spec = ModelCard.read(str(folder))
        assert spec.int8_uri is None
        assert runtime_for(runtime_args(folder), spec) == LITERT
        with pytest.raises(SetupError, match="no int8 model that passed"):
            runtime_for(runtime_args(folder, LITERT_INT8), spec)


def test_pipeline_runs_the_int8_file_by_default_and_the_float_one_on_request(
        tmp_path: Path, passed_dir: Path, fixture_concrete_dir: Path):
    inputs = sorted(fixture_concrete_dir.glob("*/*.jpg"))[::6]
    argv = [arg for path in inputs for arg in ("--input", str(path))]
    argv += ["--model", str(passed_dir)]
    run(argv + ["--output", str(tmp_path / "default")])
    run(argv + ["--output", str(tmp_path / "float"), "--runtime", "litert"])
    on_int8 = read_predictions(tmp_path / "default")
    on_float = read_predictions(tmp_path / "float")
    assert sorted(on_int8) == sorted(on_float) == sorted(str(path) for path in inputs)
    version = read_card(str(passed_dir))["model_sha256"][:12]
    assert {row["model_version"] for row in on_int8.values()} == {f"{version}-int8"}
    assert {row["model_version"] for row in on_float.values()} == {version}
    gaps = [abs(float(on_int8[uri]["crack_probability"])
                - float(on_float[uri]["crack_probability"])) for uri in on_int8]
    assert 0 < max(gaps) < 0.05, "the default run must be the int8 file, close to float"


def test_a_tampered_int8_file_is_refused_on_the_launcher_and_the_worker(
        tmp_path: Path, passed_dir: Path, fixture_concrete_dir: Path):
    spec = ModelCard.read(str(passed_dir))
    tampered = copy_model_dir(passed_dir, tmp_path / "tampered")
    with (tampered / "model_int8.tflite").open("ab") as handle:
        handle.write(b"\0")
    image = str(sorted(fixture_concrete_dir.glob("*/*.jpg"))[0])
    with pytest.raises(ModelCardError, match="int8_sha256"):
        run(["--input", image, "--model", str(tampered), "--output", str(tmp_path / "out")])
    # Replaced after the launcher's check: the worker's load checks the bytes again.
    worker_spec = ModelCard.from_card(str(tampered), read_card(str(passed_dir)))
    handler = LiteRTTileModelHandler(worker_spec.for_int8(), 8, 1, int8=True)
    with pytest.raises(ModelCardError, match="content changed since the job started"):
        handler.load_model()
    assert spec.int8_sha256 == worker_spec.int8_sha256

    hand_edited = copy_model_dir(passed_dir, tmp_path / "hand-edited")
    card = read_card(str(hand_edited))
    card["int8"]["gate"]["passed"] = False
    write_card(str(hand_edited), card)
    with pytest.raises(ModelCardError, match="int8.gate did not pass"):
        read_card(str(hand_edited))


def test_bench_measures_both_files_at_toy_size(passed_dir: Path, fixture_dataset: Path):
    from bench import int8

    result = int8.main(["--model", str(passed_dir), "--data", str(fixture_dataset),
                        "--seconds", "0.05", "--repeats", "1", "--threads", "1",
                        "--workers", "2", "--no-pipeline"])
    speed = result.split("\n\n")[0].splitlines()
    assert [row.split("|")[1:3] for row in speed[2:]] == [
        [" float ", " 1 interpreter x 1 threads "], [" float ", " 2 interpreters x 1 thread "],
        [" int8 ", " 1 interpreter x 1 threads "], [" int8 ", " 2 interpreters x 1 thread "],
        [" int8 / float ", " 1 interpreter x 1 threads "],
        [" int8 / float ", " 2 interpreters x 1 thread "]]
    for row in speed[2:6]:
        rates = [float(cell) for cell in row.split("|")[3:7]]
        assert min(rates) > 0 and rates[-1] == max(rates[:-1])
    assert "| concrete | 12 |" in result and "pipeline marginal" not in result


def test_bench_runs_the_pipeline_on_an_int8_file_the_card_does_not_list(
        float_dir: Path, passed_dir: Path, fixture_dataset: Path, fixture_concrete_dir: Path,
        real_data: Path):
    from bench import int8

    survey = sorted((real_data / "data" / "field" / "uavcrack" / "images").iterdir())[0]
    result = int8.main(["--model", str(float_dir), "--data", str(fixture_dataset),
                        "--int8", str(passed_dir / "model_int8.tflite"),
                        "--images", str(fixture_concrete_dir), "--counts", "4", "12",
                        "--survey", str(survey), "--survey-counts", "1", "3",
                        "--seconds", "0.05", "--repeats", "1", "--threads", "1"])
    speed, pipeline = (table.splitlines() for table in result.split("\n\n")[:2])
    best = {name: max(float(cell) for row in speed[2:6] if row.startswith(f"| {name} ")
                      for cell in row.split("|")[3:7]) for name in ("float", "int8")}
    header, _, float_row, int8_row, ratio_row = pipeline
    assert header.startswith("| file | pipeline marginal | / its best forward | "
                             "/ float best forward | survey MP/s")
    megapixels = {}
    for name, row in (("float", float_row), ("int8", int8_row)):
        # A toy job's rate is noise (4 vs 12 images); the table's arithmetic is not.
        marginal, own, of_float, megapixels[name] = (float(cell)
                                                     for cell in row.split("|")[2:6])
        assert own == pytest.approx(marginal / best[name], abs=0.01)
        assert of_float == pytest.approx(marginal / best["float"], abs=0.01)
    assert ratio_row.startswith("| int8 / float")
    assert float(ratio_row.split("|")[5].strip(" x")) == pytest.approx(
        megapixels["int8"] / megapixels["float"], rel=0.02, abs=0.01)
