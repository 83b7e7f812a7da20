"""One archive, every worker: a zip and a tar.gz scored against the same images as a folder.

    python -m bench.zip_parallel [--model MODEL_DIR] [--count 4000] [--workers 2]
        [--photo-counts 1 2 4] [--gcs-count 400] [--repeats 2]

Every run is a whole ``pipeline.score`` job (checks, graph, worker start-up, model load,
read, decode, infer, write, report) on the DirectRunner's ``multi_processing`` mode with
``--workers`` worker processes, timed from the call to its summary. Each part interleaves
what it compares, ``--repeats`` times (median):

1. archives: ``--count`` images of ``--images`` as a folder, as one stored zip, as one
   tar.gz, and as the zip with the spreading shuffle taken out (the control: the zip read
   and scored by the one worker that lists it, as before);
2. large photos: ``--photo-counts`` N copies of a 4800x6000 survey photo, their tiles
   scored on the worker that decoded the photo (as shipped) or spread over the workers by
   a shuffle after tiling;
3. gs://: the same images as a folder and as a stored zip in a local GCS emulator
   (``--gcs-count`` images; 0 leaves it out).

Each row says whether its prediction rows equal the first configuration's (every column
but ``uri`` and ``scored_at``, matched by file name), whether the accounting is exact
(``accounting_ok``, every image seen and scored) and how many tiles each worker process
scored (``pipeline.workers``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from bench.measure import copy_images, interleaved_medians, machine, markdown_table
from pipeline.inference import SHIPPED_MODEL_DIR
from pipeline.records import parse_predictions
from pipeline.score import run as score
from pipeline.tiling import TILES, DecodeAndTile
from pipeline.workers import TILES_SCORED, per_worker

REPO = Path(__file__).resolve().parent.parent
# The shared 4800x6000 survey photo that decodes whole (its sibling of that size is cut
# short and fails to decode), copied under new names as bench/survey_memory.py does.
SURVEY_PHOTO = "CRACK500_20160328_153612_1281_1081.jpg"
GCS_BUCKET = "crackscan-bench"


class RecordingPipeline(beam.Pipeline):
    """A pipeline that keeps its result, whose metrics say which worker scored what."""

    result: beam.runners.runner.PipelineResult

    def run(self, test_runner_api: Any = "AUTO") -> beam.runners.runner.PipelineResult:
        self.result = super().run(test_runner_api)
        return self.result


class NotSpread(beam.PTransform):
    """The control: no shuffle between listing and reading, as before."""

    def expand(self, located: beam.PCollection) -> beam.PCollection:
        return located | "Unchanged" >> beam.Map(lambda element: element)


class DecodeAndTileSpread(DecodeAndTile):
    """Tiling as shipped, then the tiles shuffled over the workers before inference."""

    def expand(self, images: beam.PCollection) -> dict[str, beam.PCollection]:
        outputs = super().expand(images)
        return {**outputs, TILES: outputs[TILES] | "SpreadTiles" >> beam.Reshuffle()}


@dataclass
class Config:
    """One way of scoring: its inputs and what is patched into the job for it."""

    inputs: list[str]
    what: str
    patch: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext


@dataclass
class Outcome:
    seconds: float
    summary: dict[str, Any]
    rows: dict[str, dict[str, Any]]
    tiles_per_worker: dict[str, int]


def name_of(uri: str) -> str:
    """A row's file name, whether it came from a folder or an archive."""
    return uri.rsplit("/", 1)[-1].rsplit("!", 1)[-1]


def read_rows(paths: list[str]) -> dict[str, dict[str, Any]]:
    rows = {}
    for path in paths:
        with FileSystems.open(path) as handle:
            text = handle.read().decode("utf-8")
        for row in parse_predictions(path, text):
            rows[name_of(row["uri"])] = {key: value for key, value in row.items()
                                         if key not in ("uri", "scored_at")}
    return rows


def score_once(config: Config, model: str, workers: int, out: str) -> Outcome:
    flags = ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    inputs = [arg for uri in config.inputs for arg in ("--input", uri)]
    pipeline = RecordingPipeline(options=PipelineOptions(flags))
    with config.patch(), contextlib.redirect_stdout(io.StringIO()):
        started = time.perf_counter()
        summary = score([*inputs, "--model", model, "--output", out, *flags],
                        test_pipeline=pipeline)
        seconds = time.perf_counter() - started
    assert summary is not None, f"{config.what}: the job did not finish"
    return Outcome(seconds, summary, read_rows(summary["outputs"]["predictions"]),
                   per_worker(pipeline.result, TILES_SCORED))


def compare(configs: dict[str, Config], model: str, workers: int, repeats: int,
            images: int, work: str, unit: str = "images") -> str:
    """The configurations interleaved ``repeats`` times; a table of their medians, with
    the rate in ``unit`` (images, or tiles) per second."""
    outcomes: dict[str, list[Outcome]] = {name: [] for name in configs}

    def measure(name: str) -> float:
        out = os.path.join(work, f"out-{len(os.listdir(work))}")
        outcome = score_once(configs[name], model, workers, out)
        outcomes[name].append(outcome)
        print(f"  {name}: {outcome.seconds:.1f} s", file=sys.stderr, flush=True)
        return outcome.seconds

    seconds = interleaved_medians(measure, list(configs), repeats)
    first = next(iter(configs))
    reference = outcomes[first][0].rows
    rows = []
    for name, config in configs.items():
        runs = outcomes[name]
        exact = all(run.summary["accounting_ok"] and run.summary["seen"] == images
                    and run.summary["scored"] == images for run in runs)
        identical = all(run.rows == reference for run in runs)
        split = " / ".join(str(tiles) for tiles in
                           sorted(runs[0].tiles_per_worker.values(), reverse=True))
        done = images if unit == "images" else runs[0].summary["tiles"]
        rows.append([name, config.what, f"{seconds[name]:.1f}",
                     f"{done / seconds[name]:.1f}", f"{seconds[name] / seconds[first]:.2f}",
                     "yes" if identical else "NO", "yes" if exact else "NO", split])
    return markdown_table(["input", "what", "seconds", f"{unit}/s", f"time / {first}",
                           f"rows = {first}", "accounting exact", "tiles per worker"], rows)


def write_archives(folder: Path, target: Path) -> dict[str, Path]:
    """A stored zip and a tar.gz of every file in ``folder``, under its own name."""
    files = sorted(folder.iterdir())
    paths = {"zip": target / "survey.zip", "tar.gz": target / "survey.tar.gz"}
    with zipfile.ZipFile(paths["zip"], "w", zipfile.ZIP_STORED) as packed:
        for path in files:
            packed.write(path, path.name)
    with tarfile.open(paths["tar.gz"], "w:gz") as tarred:
        for path in files:
            tarred.add(path, path.name)
    return paths


def archive_configs(folder: Path, archives: dict[str, Path]) -> dict[str, Config]:
    return {
        "folder": Config([str(folder)], "one file per image"),
        "zip": Config([str(archives["zip"])], "one stored zip, members spread"),
        "tar.gz": Config([str(archives["tar.gz"])], "one tar.gz, images spread after reading"),
        "zip, not spread": Config([str(archives["zip"])],
                                  "control: one worker reads and scores the zip (as before)",
                                  lambda: mock.patch("pipeline.reading.SpreadOverWorkers",
                                                     NotSpread)),
    }


def photo_configs(photos: Path, folder: Path, count: int) -> dict[str, Config]:
    folder.mkdir(parents=True)
    for index in range(count):
        shutil.copyfile(photos / SURVEY_PHOTO, folder / f"{index:03d}-{SURVEY_PHOTO}")
    return {
        "tiles fused": Config(
            [str(folder)], "a photo's tiles scored where it was decoded (as shipped)"),
        "tiles spread": Config(
            [str(folder)], "tiles shuffled over the workers after tiling",
            lambda: mock.patch("pipeline.score.DecodeAndTile", DecodeAndTileSpread)),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def gcs_emulator(work: Path) -> Iterator[str]:
    """``gs://crackscan-bench`` in a local in-memory emulator, with credentials that never
    leave the machine (as ``tests/cloud_fixtures.py`` sets them up for the tests)."""
    closed = f"127.0.0.1:{free_port()}"
    credentials = work / "credentials.json"
    credentials.write_text(json.dumps({
        "type": "authorized_user", "client_id": "bench", "client_secret": "unused",
        "refresh_token": "unused", "token": "emulator-token",
        "expiry": "2099-01-01T00:00:00Z", "token_uri": f"http://{closed}/token"}))
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(credentials), "CLOUDSDK_CONFIG": str(work),
           "GCE_METADATA_HOST": closed, "GCE_METADATA_IP": closed, "NO_GCE_CHECK": "True",
           "GOOGLE_CLOUD_PROJECT": "crackscan-bench", "STORAGE_EMULATOR_HOST": host}
    process = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
         "--port", str(port), "--in-memory", "--default-bucket", GCS_BUCKET],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{host}/storage/v1/b/{GCS_BUCKET}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the GCS emulator did not start") from None
                time.sleep(0.2)
        with mock.patch.dict(os.environ, env):
            yield f"gs://{GCS_BUCKET}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def upload(local: Path, uri: str) -> None:
    with FileSystems.create(uri) as handle:
        handle.write(local.read_bytes())


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SHIPPED_MODEL_DIR,
                        help="model folder (default: the shipped model, LiteRT)")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/concrete"))
    parser.add_argument("--count", type=int, default=4000,
                        help="images per archive run (default 4000)")
    parser.add_argument("--workers", type=int, default=2,
                        help="DirectRunner worker processes (default 2)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="interleaved repeats of every measurement (default 2)")
    parser.add_argument("--photos", type=Path, default=Path("../shared/data/survey/crack"),
                        help=f"folder holding the 4800x6000 photo {SURVEY_PHOTO}")
    parser.add_argument("--photo-counts", type=int, nargs="*", default=[1, 2, 4],
                        help="photos per large-photo run (default 1 2 4; none: skip)")
    parser.add_argument("--gcs-count", type=int, default=400,
                        help="images of the gs:// runs (default 400; 0: skip)")
    args = parser.parse_args(argv)
    # Worker processes import the pipeline by module name.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

    tables = []
    with tempfile.TemporaryDirectory(prefix="zip-parallel-") as scratch:
        work = Path(scratch)
        folder = work / "images"
        folder.mkdir()
        count = copy_images(args.images, str(folder), args.count)
        archives = write_archives(folder, work)
        (work / "runs").mkdir()
        print(f"{count} images as a folder, a zip and a tar.gz ...", file=sys.stderr)
        tables.append((f"1. {count} images of {args.images}, {args.workers} worker processes",
                       compare(archive_configs(folder, archives), args.model, args.workers,
                               args.repeats, count, str(work / "runs"))))
        for photos in args.photo_counts:
            print(f"{photos} large photos ...", file=sys.stderr)
            configs = photo_configs(args.photos, work / f"photos-{photos}", photos)
            tables.append((f"2. {photos} x a 4800x6000 photo (copies), {args.workers} "
                           f"worker processes",
                           compare(configs, args.model, args.workers, args.repeats, photos,
                                   str(work / "runs"), unit="tiles")))
        if args.gcs_count:
            print(f"{args.gcs_count} images on gs:// ...", file=sys.stderr)
            small = work / "gcs-images"
            small.mkdir()
            copy_images(args.images, str(small), args.gcs_count)
            with gcs_emulator(work) as bucket:
                for path in sorted(small.iterdir()):
                    upload(path, f"{bucket}/images/{path.name}")
                (work / "gcs-archives").mkdir()
                upload(write_archives(small, work / "gcs-archives")["zip"],
                       f"{bucket}/survey.zip")
                configs = {"gs:// folder": Config([f"{bucket}/images/"], "one object per image"),
                           "gs:// zip": Config([f"{bucket}/survey.zip"],
                                               "one stored zip object, members spread")}
                tables.append((f"3. {args.gcs_count} images in a local GCS emulator, "
                               f"{args.workers} worker processes",
                               compare(configs, args.model, args.workers, args.repeats,
                                       args.gcs_count, str(work / "runs"))))
    result = "\n\n".join(f"{title}\n\n{table}" for title, table in tables)
    print(f"pipeline.score, DirectRunner multi_processing; seconds: the whole job, median of "
          f"{args.repeats} interleaved runs; model {args.model}\n{machine()}\n\n{result}")
    return result


if __name__ == "__main__":
    main()
