"""The int8 model: quantized on the data set, gated per source against the float file,
listed in the card only when it passed, and then run where it is faster: the launcher times
both files here, a remote worker times them where it runs.

Real conversions throughout (calibration, the quantization debugger, LiteRT) on a small
convolutional model trained for a few seconds on the checked-in concrete patches, so its
verdicts mean something; real pipeline runs for the scorer's choice.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
from pathlib import Path

import apache_beam as beam
import keras
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from crackscan import cli
from crackscan.model_card import ModelCard, ModelCardError, file_sha256, read_card, write_card
from crackscan.tflite_model import TFLiteClassifier
from pipeline.batch_size import cache_path
from pipeline.inference import (LITERT, LITERT_INT8, LITERT_PER_WORKER, LiteRTTileModelHandler,
                                litert_file, read_checked)
from pipeline.runtime_choice import (INT8_MARGIN, WORKERS_DECIDE, Timer,
                                     WorkerChoosesTileModelHandler, faster, on_launcher,
                                     speedups, worker_counter)
from pipeline.score import SetupError, build, build_parser, prepare, run, runtime_for
from pipeline.workers import per_worker
from training import export_tflite, input_pipeline, int8_export
from training.int8_gate import GateLimits, SplitScores, gate

from scoring_helpers import IN_MEMORY, read_predictions

TILE = 227  # the checked-in patches' size


def small_model() -> keras.Model:
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Resizing(64, 64)(inputs)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The launcher's measurements go to this test's own cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return cache_path()


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


LOCAL, REMOTE = PipelineOptions([]), PipelineOptions(["--runner=PortableRunner"])


def favouring(winner: str, ratio: float) -> Timer:
    """A timer that rates ``winner`` ``ratio`` times the other file; float runs fastest at
    batch 1 and int8 at 8, as on the AVX2 machine of bench/README.md section 8."""
    def timer(contents: dict[str, bytes], threads: int, tile_size: int,
              candidates: tuple[int, ...]) -> dict[str, dict[int, float]]:
        peak = {LITERT: 1, LITERT_INT8: 8}
        return {runtime: {batch: (ratio if runtime == winner else 1.0)
                          * (100.0 if batch == peak[runtime] else 80.0)
                          for batch in candidates} for runtime in contents}
    return timer


def untimed(*_: object) -> dict[str, dict[int, float]]:
    raise AssertionError("timed although nothing needed timing")


def test_the_default_runtime_follows_the_rates_timed_here(
        passed_dir: Path, refused_dir: Path, float_dir: Path, own_cache: Path):
    passed = ModelCard.read(str(passed_dir))
    default = runtime_args(passed_dir)
    choice = runtime_for(default, passed, LOCAL, 1, favouring(LITERT_INT8, 1.5))
    assert (choice.runtime, choice.why) == (LITERT_INT8, "measured here")
    assert choice.best_rates() == {LITERT: 100.0, LITERT_INT8: 150.0}
    assert choice.speedup() == 1.5 and choice.batch_size() == 8
    # Cached per pair of files, thread count and CPU: the next launch here times nothing.
    again = runtime_for(default, passed, LOCAL, 1, untimed)
    assert (again.runtime, again.why, again.rates) == (LITERT_INT8, "measured here (cached)",
                                                       choice.rates)
    # Another thread count is another measurement: here float is as fast or faster.
    for threads, timer in ((2, favouring(LITERT_INT8, 1.1)), (3, favouring(LITERT, 1.2))):
        choice = runtime_for(default, passed, LOCAL, threads, timer)
        assert (choice.runtime, choice.batch_size()) == (LITERT, 1), \
            f"int8 below the {INT8_MARGIN}x margin must not be taken"
    at_margin = {LITERT: {1: 100.0, 8: 90.0}, LITERT_INT8: {1: 115.0, 8: 90.0 * INT8_MARGIN}}
    assert faster(at_margin) == LITERT_INT8
    # One lucky timing (int8 at batch 1 while a neighbour paused) does not choose int8:
    # its best rate is 1.5x float's, but at the other sizes it is no faster.
    lucky = {LITERT: {1: 100.0, 2: 95.0, 4: 95.0}, LITERT_INT8: {1: 150.0, 2: 96.0, 4: 94.0}}
    assert speedups(lucky) == (1.5, pytest.approx(96 / 95)) and faster(lucky) == LITERT

    for runtime in (LITERT, LITERT_INT8):  # --runtime forces either, untimed
        forced = runtime_for(runtime_args(passed_dir, runtime), passed, LOCAL, 4, untimed)
        assert (forced.runtime, forced.why, forced.best_rates()) == (runtime, "--runtime", None)
    remote = runtime_for(default, passed, REMOTE, 1, untimed)
    assert (remote.runtime, remote.why) == (LITERT_PER_WORKER, WORKERS_DECIDE)
    for folder in (refused_dir, float_dir):
        spec = ModelCard.read(str(folder))
        assert spec.int8_uri is None
        assert runtime_for(runtime_args(folder), spec, LOCAL, 1, untimed).runtime == LITERT
        with pytest.raises(SetupError, match="no int8 model that passed"):
            runtime_for(runtime_args(folder, LITERT_INT8), spec, LOCAL, 1, untimed)


def plant_rates(spec: ModelCard, threads: int, float_rate: float, int8_rate: float) -> None:
    """A measurement in the launcher's cache, as an earlier launch here leaves it: float
    fastest at batch 1, int8 at 8."""
    rates = {LITERT: {1: float_rate, 8: 0.8 * float_rate},
             LITERT_INT8: {1: 0.8 * int8_rate, 8: int8_rate}}
    assert on_launcher(spec, threads, lambda *_: rates).why == "measured here"


def test_a_run_scores_on_the_runtime_measured_faster_and_says_why(
        tmp_path: Path, passed_dir: Path, fixture_concrete_dir: Path, own_cache: Path):
    spec = ModelCard.read(str(passed_dir))
    inputs = sorted(fixture_concrete_dir.glob("*/*.jpg"))[::6]
    argv = [arg for path in inputs for arg in ("--input", str(path))]
    argv += ["--model", str(passed_dir), "--litert-threads", "1", IN_MEMORY]
    version = read_card(str(passed_dir))["model_sha256"][:12]
    runs = {}
    for name, (float_rate, int8_rate, speedup) in {"int8": (100.0, 150.0, 1.5375),
                                                   "float": (100.0, 105.0, 1.07625)}.items():
        own_cache.unlink(missing_ok=True)
        plant_rates(spec, 1, float_rate, int8_rate)
        runs[name] = run(argv + ["--output", str(tmp_path / name)])
        rows = read_predictions(tmp_path / name)
        assert sorted(rows) == sorted(str(path) for path in inputs)
        expected = f"{version}-int8" if name == "int8" else version
        assert {row["model_version"] for row in rows.values()} == {expected}
        inference = runs[name]["inference"]
        assert inference.pop("runtime_speedup") == pytest.approx(speedup, abs=1e-3)
        assert inference == {
            "runtime": LITERT_INT8 if name == "int8" else LITERT,
            "runtime_from": "measured here (cached)",
            "runtime_rates": {LITERT: float_rate, LITERT_INT8: int8_rate},
            "batch_size": 8 if name == "int8" else 1,
            "batch_size_from": "measured here (cached)", "litert_threads": 1}
    report = (tmp_path / "int8" / "report.html").read_text()
    assert ("runtime litert-int8: measured here (cached); int8 150.0 vs float 100.0 images/s "
            "at their fastest batch sizes, int8/float 1.54x in the median over batch sizes "
            "(int8 wanted &gt;= 1.15x in both)") in report
    on_int8, on_float = (read_predictions(tmp_path / name) for name in ("int8", "float"))
    gaps = [abs(float(on_int8[uri]["crack_probability"])
                - float(on_float[uri]["crack_probability"])) for uri in on_int8]
    assert 0 < max(gaps) < 0.05, "two files ran, close to one another"

    forced = run(argv + ["--output", str(tmp_path / "forced"), "--runtime", LITERT_INT8])
    assert forced["inference"]["runtime_from"] == "--runtime"
    assert forced["inference"]["runtime_rates"] is forced["inference"]["runtime_speedup"] is None
    with contextlib.redirect_stdout(io.StringIO()):
        plan = run(argv + ["--output", str(tmp_path / "remote"), "--dry-run",
                           "--runner=PortableRunner", "--job_endpoint=localhost:1"])
    assert plan["inference"] == {"runtime": LITERT_PER_WORKER, "runtime_from": WORKERS_DECIDE,
                                 "runtime_rates": None, "runtime_speedup": None,
                                 "batch_size": 8,
                                 "batch_size_from": "default", "litert_threads": 1}


def test_remote_workers_each_time_both_files_and_run_the_faster(passed_dir: Path):
    spec = ModelCard.read(str(passed_dir))
    tiles = [np.full((TILE, TILE, 3), level, np.uint8) for level in (40, 200)]
    for winner, version in ((LITERT_INT8, spec.for_int8().version), (LITERT, spec.version)):
        handler = WorkerChoosesTileModelHandler(spec, 2, 1, favouring(winner, 1.5))
        model = handler.load_model()
        assert model.version == version
        results = handler.run_inference(tiles, model)
        assert [result.model_id for result in results] == [version, version]
        uri, sha256 = litert_file(spec, int8=winner == LITERT_INT8)
        expected = TFLiteClassifier(read_checked(uri, sha256), 1).predict(tiles)
        np.testing.assert_allclose([result.inference for result in results],
                                   expected[:, spec.positive_index], atol=1e-6)


def test_a_remote_job_counts_each_workers_choice_and_its_rows_name_the_file_it_ran(
        tmp_path: Path, passed_dir: Path, fixture_concrete_dir: Path):
    """The whole job as a remote runner builds it, run here: the worker times both files
    for real, and its rows and counter follow what it chose."""
    inputs = sorted(fixture_concrete_dir.glob("*/*.jpg"))[::10]
    argv = [arg for path in inputs for arg in ("--input", str(path))]
    args, beam_args = cli.parse_with_beam_options(build_parser(), argv + [
        "--model", str(passed_dir), "--output", str(tmp_path / "out"), "--runtime", LITERT,
        "--batch-size", "4", IN_MEMORY])
    options = PipelineOptions(beam_args)
    facts = dataclasses.replace(prepare(args, options), runtime=LITERT_PER_WORKER,
                                runtime_from=WORKERS_DECIDE)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, facts)
    result = pipeline.run()
    result.wait_until_finish()
    chosen = {runtime: per_worker(result, worker_counter(runtime))
              for runtime in (LITERT, LITERT_INT8)}
    ran = [runtime for runtime, workers in chosen.items() if workers]
    assert len(ran) == 1 and list(chosen[ran[0]].values()) == [len(inputs)], chosen
    spec = facts.spec
    version = spec.for_int8().version if ran == [LITERT_INT8] else spec.version
    rows = read_predictions(tmp_path / "out")
    assert {row["model_version"] for row in rows.values()} == {version}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["inference"]["runtime"] == LITERT_PER_WORKER
    assert summary["inference"]["runtime_from"] == WORKERS_DECIDE


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
    # A remote worker that times both files refuses it before timing either.
    with pytest.raises(ModelCardError, match="content changed since the job started"):
        WorkerChoosesTileModelHandler(worker_spec, 8, 1, untimed).load_model()
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


def test_bench_runs_each_file_forced_and_the_default_beside_them(
        passed_dir: Path, fixture_dataset: Path, fixture_concrete_dir: Path):
    from bench import int8

    result = int8.main(["--model", str(passed_dir), "--data", str(fixture_dataset),
                        "--images", str(fixture_concrete_dir), "--counts", "4", "12",
                        "--no-survey", "--seconds", "0.05", "--repeats", "1", "--threads", "1"])
    pipeline = result.split("\n\n")[1].splitlines()
    names = [row.split("|")[1].strip() for row in pipeline[2:]]
    assert names[:3] == ["float", "int8", "int8 / float"]
    assert names[3:] in (["default (took float)"], ["default (took int8)"])
    runtime = LITERT_INT8 if names[3] == "default (took int8)" else LITERT
    # The default's dry-run timed the two files; its timed jobs read that from the cache.
    assert f"default job: runtime {runtime}: measured here; int8 " in result
