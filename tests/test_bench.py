"""The benchmarks run end to end at toy sizes, so they keep working as the code changes.

Their figures are not checked here: a test is no benchmark (timings on a shared CI machine
say nothing). What is checked is that each one measures everything it claims to and prints
its table; the figures themselves are in bench/README.md.
"""
from __future__ import annotations

import os
from pathlib import Path

from bench import (flip_average, masks, runner_modes, runtimes, scoring, shipped_cost,
                   survey_memory, training_input, zip_parallel)


def rows(table: str) -> list[str]:
    return [line.split("|")[1].strip() for line in table.splitlines()[2:]]


def test_scoring_benchmark(trained_model_dir: Path, concrete_dir: Path):
    table = scoring.main(["--model", str(trained_model_dir), "--images", str(concrete_dir),
                          "--count", "40", "--naive-count", "4", "--seconds", "0.2",
                          "--repeats", "1", "--no-scaling"])
    assert rows(table) == ["ceiling", "pipeline, in_memory", "naive"]


def test_runtimes_benchmark(trained_model_dir: Path, concrete_dir: Path):
    table = runtimes.main(["--model", str(trained_model_dir), "--images", str(concrete_dir),
                           "--pipeline-images", "40", "--seconds", "0.2", "--repeats", "1"])
    assert rows(table) == ["keras", "litert", "litert / keras"]


def test_flip_average_benchmark(trained_model_dir: Path, concrete_dir: Path):
    table = flip_average.main(["--model", str(trained_model_dir), "--images",
                               str(concrete_dir), "--seconds", "0.2", "--repeats", "1"])
    assert rows(table) == [flip_average.ONE_PASS, "mirror average", "flips average"]


def test_runner_modes_benchmark(real_data: Path):
    table = runner_modes.main(["--images", str(real_data / "data" / "concrete"), "--counts",
                               "4", "12", "--repeats", "1", "--seconds", "0.1"])
    assert rows(table) == [*runner_modes.MODES, runner_modes.RAW]
    threads = [int(line.split("|")[2]) for line in table.splitlines()[2:5]]
    cores = os.cpu_count() or 1
    # A pool and worker threads split the cores; one process gives its interpreter all.
    assert threads == [1 if cores > 1 else cores, cores, 1]


def test_survey_memory_benchmark(trained_model_dir: Path, shared_dir: Path):
    photo = shared_dir / "data" / "survey" / "crack" / "CRACK500_20160328_153612_1281_1081.jpg"
    table = survey_memory.main(["--model", str(trained_model_dir), "--photo", str(photo),
                                "--counts", "1", "2"])
    assert rows(table) == ["1", "2"]


def test_training_input_benchmark(concrete_dataset: Path, backbone_weights: Path):
    table = training_input.main(["--data", str(concrete_dataset), "--weights",
                                 str(backbone_weights), "--image-size", "96", "--seconds",
                                 "0.3", "--repeats", "1"])
    assert [row.split(" (")[0] for row in rows(table)] == ["stage 1", "stage 2"]


def test_zip_parallel_benchmark(tiny_model_dir: Path, real_data: Path):
    tables = zip_parallel.main(["--model", str(tiny_model_dir), "--images",
                               str(real_data / "data" / "concrete"), "--count", "12",
                               "--photo-counts", "--gcs-count", "6", "--repeats", "1"])
    measured = [row for table in tables.split("\n\n") if table.startswith("|")
                for row in rows(table)]
    assert measured == ["folder", "zip", "tar.gz", "zip, not spread", "gs:// folder",
                        "gs:// zip"]
    assert "NO" not in tables


def test_shipped_cost_benchmark(real_data: Path):
    report = shipped_cost.main(["--survey", str(real_data / "data" / "concrete"),
                                "--repeats", "1"])
    table = report.split("\n\n")[-1]
    assert rows(table) == ["shipped", "plain one pass"]
    assert table.splitlines()[-1].split("|")[-2].strip() == "1.00"  # plain against itself


def test_masks_benchmark(real_data: Path):
    report = masks.main(["--survey", str(real_data / "data" / "concrete"), "--limit", "4",
                         "--repeats", "1"])
    table = report.split("\n\n")[-1]
    assert [(row, line.split("|")[2].strip()) for row, line in
            zip(rows(table), table.splitlines()[2:])] == [
        (survey, job) for survey in ("survey", "no tile flagged") for job in masks.JOBS]
    no_tile = [line.split("|") for line in table.splitlines()[5:]]
    assert all(cells[6].strip() == "0" for cells in no_tile)  # no mask tile ran
