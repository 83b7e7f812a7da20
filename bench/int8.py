"""Float vs int8 LiteRT: raw forward images/s at batch 1, 8 and 32, the pipeline's
marginal rate on each file against its best raw rate, survey megapixels/s, and both files'
accuracy on every source's test windows, in one run.

    python -m bench.int8 --model MODEL_DIR --data DATA_DIR [--int8 FILE] [--images DIR]
        [--survey PHOTO]

The int8 file is the card's (listed only when it passed its gate) or ``--int8``, e.g. one
the gate refused, to see what it would have cost and gained. Speeds are measured
interleaved, ``--repeats`` times, median reported, so a neighbour's burst slows both files
and not one; the accuracy figures are the gate's own (``training.int8_gate``) on the test
windows of the data set the model was trained on.

Raw rates come in the two layouts the pipeline can use the cores in: one interpreter on
every core (the in-memory DirectRunner) and one single-thread interpreter per core, all at
once (a pool of worker processes, the DirectRunner's default here). A file's best raw rate
is the best of both layouts and all batch sizes.

The pipeline's marginal rate is ``(4000 - 1000) / (t_4000 - t_1000)`` of two whole
``pipeline.score`` jobs with default options over copies of ``--images``: the per-image cost
of reading, decoding, tiling, batching, inference and writing, without what a job pays once.
Survey megapixels/s are the same difference over 2 and 6 copies of a 4800x6000 photo. A
``--dry-run`` of each job first leaves the launcher's measurements (batch size, and float
against int8) in its cache, so that no timed job pays them. Where the card lists the int8
file, both files are forced with ``--runtime`` and a third job with no ``--runtime`` shows
which one the default took here, why, and what it scores. An int8 file the card does not
list runs through a copy of the model folder whose card names it as the LiteRT file: the
same code path, only the rows' model version differs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.measure import (add_litert_rate_flags, copy_images, images_per_second,
                           interleaved_medians, machine, marginal_rate, markdown_table,
                           parallel_images_per_second)
from bench.survey_memory import DEFAULT_PHOTO
from pipeline.inference import LITERT, LITERT_INT8
from pipeline.runtime_choice import describe
from pipeline.score import run as score
from crackscan.model_card import file_sha256, join, read_card, write_card
from crackscan.tflite_model import TFLiteClassifier
from training.calibration import calibration_images
from training.int8_gate import gate, split_scores

BATCHES = (1, 8, 32)
FILES = ("float", "int8")
DEFAULT = "default"  # the pipeline job given no --runtime


def layouts(threads: int, workers: int) -> tuple[str, str]:
    """The two ways the raw rate uses the cores: one interpreter on ``threads`` threads (the
    in-memory runner's), and ``workers`` one-thread interpreters at once (a worker pool's)."""
    return f"1 interpreter x {threads} threads", f"{workers} interpreters x 1 thread"


def speed_table(rates: dict[str, dict[str, dict[int, float]]]) -> str:
    """Raw rates per file, layout and batch size, and each row's best."""
    header = ["file", "layout"] + [f"forward b={b}" for b in BATCHES] + ["best"]
    rows = [[name, layout] + [f"{by_batch[b]:.1f}" for b in BATCHES]
            + [f"{max(by_batch.values()):.1f}"]
            for name in FILES for layout, by_batch in rates[name].items()]
    for layout in rates["float"]:
        rows.append(["int8 / float", layout]
                    + [f"{rates['int8'][layout][b] / rates['float'][layout][b]:.2f}x"
                       for b in BATCHES] + [""])
    return markdown_table(header, rows)


def best_forward(rates: dict[str, dict[int, float]]) -> float:
    return max(rate for by_batch in rates.values() for rate in by_batch.values())


def pipeline_table(rates: dict[str, dict[str, dict[int, float]]],
                   pipeline: dict[str, float], survey: dict[str, float],
                   default: dict[str, Any] | None = None) -> str:
    """The pipeline's marginal rate against the best raw rate of the same file and of the
    float file (any layout, any batch size), and the survey photo's megapixels/s; with
    ``default`` (the default job's ``inference``), a row for the job left to choose, named
    by the runtime it took."""
    best = {name: best_forward(rates[name]) for name in FILES}
    header = ["file", "pipeline marginal", "/ its best forward", "/ float best forward"]
    if survey:
        header.append("survey MP/s")
    rows = []
    for name in FILES:
        rows.append([name, f"{pipeline[name]:.1f}", f"{pipeline[name] / best[name]:.2f}",
                     f"{pipeline[name] / best['float']:.2f}"]
                    + ([f"{survey[name]:.3g}"] if survey else []))
    rows.append(["int8 / float", f"{pipeline['int8'] / pipeline['float']:.2f}x", "", ""]
                + ([f"{survey['int8'] / survey['float']:.2f}x"] if survey else []))
    if default is not None:
        took = "int8" if default["runtime"] == LITERT_INT8 else "float"
        rows.append([f"default (took {took})", f"{pipeline[DEFAULT]:.1f}",
                     f"{pipeline[DEFAULT] / best[took]:.2f}",
                     f"{pipeline[DEFAULT] / best['float']:.2f}"]
                    + ([f"{survey[DEFAULT]:.3g}"] if survey else []))
    return markdown_table(header, rows)


def model_folder_running(model_dir: str, int8_path: str, folder: str) -> str:
    """A copy of ``model_dir`` whose card names ``int8_path`` as its LiteRT file, for the
    pipeline to run an int8 file the card does not list."""
    card = read_card(model_dir)
    for key in ("int8_file", "int8_sha256", "int8"):
        card.pop(key, None)
    name = os.path.basename(int8_path)
    shutil.copyfile(int8_path, os.path.join(folder, name))
    card.update(tflite_file=name, tflite_sha256=file_sha256(os.path.join(folder, name)))
    write_card(folder, card)
    return folder


def pipeline_rates(model_dir: str, int8_path: str | None, images: Path,
                   counts: tuple[int, int], repeats: int, survey: Path | None,
                   survey_counts: tuple[int, int]
                   ) -> tuple[dict[str, float], dict[str, float], dict[str, Any] | None]:
    """Median marginal rates of the pipeline, default options, on each file (the card's
    int8 file when ``int8_path`` is None, else that file): images/s over copies of
    ``images``, and megapixels/s over copies of the ``survey`` photo ({} without one).
    Where the card lists the int8 file, each file is forced with ``--runtime`` and a third
    job, ``default``, is left to choose; its ``inference`` (which runtime, why, the rates it
    chose on) comes third, else None."""
    with tempfile.TemporaryDirectory() as work:
        small, large = (os.path.join(work, str(count)) for count in counts)
        for folder, count in zip((small, large), counts):
            os.mkdir(folder)
            copy_images(images, folder, count)
        photos = []
        for count in survey_counts if survey else ():
            folder = os.path.join(work, f"survey-{count}")
            os.mkdir(folder)
            for index in range(count):
                shutil.copyfile(survey, os.path.join(folder, f"{index:03d}{survey.suffix}"))
            photos.append((folder, count))
        if int8_path is None:  # listed: each file forced, and the default left to choose
            models = {"float": (model_dir, ["--runtime", LITERT]),
                      "int8": (model_dir, ["--runtime", LITERT_INT8]),
                      DEFAULT: (model_dir, [])}
        else:
            os.mkdir(os.path.join(work, "int8"))
            models = {"float": (model_dir, []),
                      "int8": (model_folder_running(model_dir, int8_path,
                                                    os.path.join(work, "int8")), [])}

        plans = {}
        for name, (folder, flags) in models.items():
            with contextlib.redirect_stdout(io.StringIO()):
                plans[name] = score(["--input", small, "--model", folder, "--dry-run",
                                     "--output", os.path.join(work, "dry-run"), *flags])

        def measure(name: str) -> float:
            folder, flags = models[name]
            rate = marginal_rate(folder, (small, counts[0]), (large, counts[1]), flags)
            print(f"  pipeline marginal, {name}: {rate:.1f} images/s", flush=True)
            return rate

        def measure_survey(name: str) -> float:
            folder, flags = models[name]
            with Image.open(survey) as photo:
                megapixels = photo.width * photo.height / 1e6
            rate = megapixels * marginal_rate(folder, photos[0], photos[1], flags)
            print(f"  survey photos, {name}: {rate:.2f} MP/s", flush=True)
            return rate

        return (interleaved_medians(measure, tuple(models), repeats),
                interleaved_medians(measure_survey, tuple(models), repeats) if survey else {},
                plans[DEFAULT]["inference"] if DEFAULT in plans else None)


def accuracy_table(report: dict) -> str:
    rows = [[name, figures["examples"], f"{figures['float_accuracy']:.2%}",
             f"{figures['int8_accuracy']:.2%}", figures["flips"],
             "pass" if figures["passed"] else "FAIL"]
            for name, figures in report["by_source"].items()]
    overall = report["all"]
    rows.append(["all", overall["examples"], f"{overall['float_accuracy']:.2%}",
                 f"{overall['int8_accuracy']:.2%}", overall["flips"],
                 "pass" if report["passed"] else "FAIL"])
    return markdown_table(["test windows", "examples", "float accuracy", "int8 accuracy",
                           "flipped verdicts", "gate"], rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder with a float .tflite")
    parser.add_argument("--data", required=True,
                        help="the data set the model was trained on (test windows)")
    parser.add_argument("--int8", type=Path,
                        help="int8 .tflite to measure (default: the one the card lists)")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/concrete"),
                        help="images the pipeline scores, copied as often as needed "
                             "(default: ../shared/data/concrete)")
    parser.add_argument("--counts", type=int, nargs=2, default=(1000, 4000),
                        metavar=("SMALL", "LARGE"),
                        help="images in the two jobs of the marginal rate (default 1000 4000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="one-thread interpreters run at once for the worker-pool layout "
                             "(default: the CPU count, as the pipeline's default pool)")
    parser.add_argument("--survey", type=Path, default=DEFAULT_PHOTO,
                        help="survey photo the pipeline scores for MP/s "
                             f"(default: {DEFAULT_PHOTO})")
    parser.add_argument("--survey-counts", type=int, nargs=2, default=(2, 6),
                        metavar=("SMALL", "LARGE"),
                        help="copies of the survey photo in the two jobs (default 2 6: a "
                             "photo's tiles stay on one worker, so several keep a pool busy)")
    parser.add_argument("--no-survey", action="store_true", help="no survey photo jobs")
    parser.add_argument("--no-pipeline", action="store_true",
                        help="raw rates and accuracy only, no pipeline jobs")
    add_litert_rate_flags(parser, "file, batch size")
    args = parser.parse_args(argv)

    card = read_card(args.model)
    if args.int8 is None and "int8_file" not in card:
        parser.error(f"{args.model} lists no int8 file that passed its gate; pass --int8 FILE "
                     f"to measure another")
    int8_path = str(args.int8) if args.int8 else join(args.model, card["int8_file"])
    contents = {}
    for name, path in (("float", join(args.model, card["tflite_file"])), ("int8", int8_path)):
        with open(path, "rb") as handle:
            contents[name] = handle.read()
    tile_size = int(card["tile_size"])
    images, _ = calibration_images(args.data, tile_size, per_stream=8)
    # Repeated where the set is small, so that the largest batch is measured at all.
    images = np.resize(images, (max(len(images), 2 * max(BATCHES)), *images.shape[1:]))
    images = images.astype(np.float32)
    single, pool = layouts(args.threads, args.workers)
    forwards = {name: TFLiteClassifier(content, args.threads).predict
                for name, content in contents.items()}
    rates: dict[str, dict[str, dict[int, float]]] = {name: {single: {}, pool: {}}
                                                     for name in FILES}
    for batch in BATCHES:
        one = interleaved_medians(lambda name: images_per_second(
            forwards[name], images, batch, args.seconds), FILES, args.repeats)
        many = interleaved_medians(lambda name: parallel_images_per_second(
            contents[name], images, batch, args.seconds, args.workers), FILES, args.repeats)
        for name in FILES:
            rates[name][single][batch], rates[name][pool][batch] = one[name], many[name]
    result = speed_table(rates)
    if not args.no_pipeline:
        pipeline, survey, default = pipeline_rates(
            args.model, args.int8 and str(args.int8), args.images, tuple(args.counts),
            args.repeats, None if args.no_survey else args.survey, tuple(args.survey_counts))
        result += f"\n\n{pipeline_table(rates, pipeline, survey, default)}"
        result += ("\n\ndefault job: " + describe(default) if default else
                   "\n\ndefault job: runs float (the card lists no int8 file)")
    positive = card["class_names"].index(card["positive_class"])
    report = gate(split_scores(contents, args.data, "test", tile_size, positive),
                  "float", "int8", float(card["threshold"]))
    result += f"\n\n{accuracy_table(report)}"
    print(f"images/s (median of {args.repeats} interleaved runs of {args.seconds:g} s), "
          f"{tile_size} px tiles from the train split, LiteRT threads {args.threads}; "
          f"int8: {int8_path} ({len(contents['int8']):,} bytes, float "
          f"{len(contents['float']):,}); accuracy at threshold {card['threshold']:.4f}\n"
          f"{machine()}\n")
    print(result)
    return result


if __name__ == "__main__":
    main()
