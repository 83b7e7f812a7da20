"""Float vs int8 LiteRT: raw forward images/s at batch 1, 8 and 32, the pipeline's
marginal rate on each file against its best raw rate, and both files' accuracy on every
source's test windows, in one run.

    python -m bench.int8 --model MODEL_DIR --data DATA_DIR [--int8 FILE] [--images DIR]

The int8 file is the card's (listed only when it passed its gate) or ``--int8``, e.g. one
the gate refused, to see what it would have cost and gained. Speeds are measured
interleaved, ``--repeats`` times, median reported, so a neighbour's burst slows both files
and not one; the accuracy figures are the gate's own (``training.int8_gate``) on the test
windows of the data set the model was trained on.

The pipeline's marginal rate is ``(4000 - 1000) / (t_4000 - t_1000)`` of two whole
``pipeline.score`` jobs with default options over copies of ``--images``: the per-image cost
of reading, decoding, tiling, batching, inference and writing, without what a job pays once.
An int8 file the card does not list runs through a copy of the model folder whose card names
it as the LiteRT file: the same code path, only the rows' model version differs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bench.measure import (copy_images, images_per_second, interleaved_medians, machine,
                           marginal_rate, markdown_table)
from crackscan.model_card import file_sha256, join, read_card, write_card
from crackscan.tflite_model import TFLiteClassifier
from training.calibration import calibration_images
from training.int8_gate import gate, split_scores

BATCHES = (1, 8, 32)
FILES = ("float", "int8")


def speed_table(rates: dict[int, dict[str, float]], pipeline: dict[str, float]) -> str:
    """Raw rates per batch size, and the pipeline's marginal rate against the best raw rate
    of the same file and of the float file."""
    best = {name: max(rates[batch][name] for batch in BATCHES) for name in FILES}
    header = ["file"] + [f"forward b={b}" for b in BATCHES]
    rows = [[name] + [f"{rates[batch][name]:.1f}" for batch in BATCHES] for name in FILES]
    ratio = ["int8 / float"] + [f"{rates[b]['int8'] / rates[b]['float']:.2f}x"
                                for b in BATCHES]
    if pipeline:
        header += ["pipeline marginal", "/ its best forward", "/ float best forward"]
        for row, name in zip(rows, FILES):
            row += [f"{pipeline[name]:.1f}", f"{pipeline[name] / best[name]:.2f}",
                    f"{pipeline[name] / best['float']:.2f}"]
        ratio += [f"{pipeline['int8'] / pipeline['float']:.2f}x", "", ""]
    rows.append(ratio)
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
                   counts: tuple[int, int], repeats: int) -> dict[str, float]:
    """Median marginal rate of the pipeline, default options, on each file: the card's
    int8 file when ``int8_path`` is None, else that file."""
    with tempfile.TemporaryDirectory() as work:
        small, large = (os.path.join(work, str(count)) for count in counts)
        for folder, count in zip((small, large), counts):
            os.mkdir(folder)
            copy_images(images, folder, count)
        if int8_path is None:  # listed: the pipeline runs it by default, float on request
            models = {"float": (model_dir, ["--runtime", "litert"]), "int8": (model_dir, [])}
        else:
            os.mkdir(os.path.join(work, "int8"))
            models = {"float": (model_dir, []),
                      "int8": (model_folder_running(model_dir, int8_path,
                                                    os.path.join(work, "int8")), [])}

        def measure(name: str) -> float:
            folder, flags = models[name]
            rate = marginal_rate(folder, (small, counts[0]), (large, counts[1]), flags)
            print(f"  pipeline marginal, {name}: {rate:.1f} images/s", flush=True)
            return rate

        return interleaved_medians(measure, FILES, repeats)


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
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="LiteRT XNNPACK threads (default: the CPU count)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="measuring time per file, batch size and repeat (default 3)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats of every measurement (default 3)")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/concrete"),
                        help="images the pipeline scores, copied as often as needed "
                             "(default: ../shared/data/concrete)")
    parser.add_argument("--counts", type=int, nargs=2, default=(1000, 4000),
                        metavar=("SMALL", "LARGE"),
                        help="images in the two jobs of the marginal rate (default 1000 4000)")
    parser.add_argument("--no-pipeline", action="store_true",
                        help="raw rates and accuracy only, no pipeline jobs")
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
    forwards = {name: TFLiteClassifier(content, args.threads).predict
                for name, content in contents.items()}
    rates = {batch: interleaved_medians(
        lambda name: images_per_second(forwards[name], images.astype(np.float32), batch,
                                       args.seconds), FILES, args.repeats)
        for batch in BATCHES}
    pipeline = ({} if args.no_pipeline else
                pipeline_rates(args.model, args.int8 and str(args.int8), args.images,
                               tuple(args.counts), args.repeats))
    positive = card["class_names"].index(card["positive_class"])
    report = gate(split_scores(contents, args.data, "test", tile_size, positive),
                  "float", "int8", float(card["threshold"]))
    result = f"{speed_table(rates, pipeline)}\n\n{accuracy_table(report)}"
    print(f"images/s (median of {args.repeats} interleaved runs of {args.seconds:g} s), "
          f"{tile_size} px tiles from the train split, LiteRT threads {args.threads}; "
          f"int8: {int8_path} ({len(contents['int8']):,} bytes, float "
          f"{len(contents['float']):,}); accuracy at threshold {card['threshold']:.4f}\n"
          f"{machine()}\n")
    print(result)
    return result


if __name__ == "__main__":
    main()
