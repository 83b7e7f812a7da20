"""Keras vs LiteRT: raw forward images/s per batch size, and the scoring pipeline on each.

    python -m bench.runtimes --model MODEL_DIR [--images ../shared/data/concrete]

Everything is measured in this one run on this machine, so the ratios compare like with
like; nothing is compared with times recorded elsewhere. Runtimes are measured interleaved,
``--repeats`` times, and the median is reported: on a shared VM a neighbour's burst would
otherwise land on one runtime only. The pipeline runs score a folder of whole concrete
images (one tile each), so its images/s is directly comparable to the raw forward rate at
its batch size; it includes the job's fixed costs (checks, graph, model load, report).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import keras
import numpy as np

from bench.measure import (add_litert_rate_flags, copy_images, images_per_second,
                           interleaved_medians, machine, markdown_table, pipeline_rate,
                           ONE_PROCESS)
from crackscan.model_card import join, read_card
from crackscan.tflite_model import TFLiteClassifier
from pipeline.inference import DEFAULT_BATCH_SIZES, LITERT_INT8
from training.export_tflite import sample_images

BATCHES = (1, 8, 32)  # includes each runtime's pipeline default (DEFAULT_BATCH_SIZES)


def table(raw: dict[str, dict[int, float]], pipeline: dict[str, float],
          beside: dict[str, float]) -> str:
    """Markdown: one row per runtime, then LiteRT's speed-up over Keras."""
    header = (["runtime"] + [f"forward b={b}" for b in BATCHES]
              + ["pipeline (its default batch)", "forward at that batch, beside it",
                 "pipeline / forward"])
    rows = []
    for name, rates in raw.items():
        row = [name] + [f"{rates[b]:.1f}" for b in BATCHES]
        batch = DEFAULT_BATCH_SIZES[name]
        row += [f"{pipeline[name]:.1f} (b={batch})", f"{beside[name]:.1f}",
                f"{pipeline[name] / beside[name]:.2f}"]
        rows.append(row)
    for name in raw:
        if name != "keras":
            rows.append([f"{name} / keras"]
                        + [f"{raw[name][b] / raw['keras'][b]:.2f}x" for b in BATCHES]
                        + [f"{pipeline[name] / pipeline['keras']:.2f}x", "", ""])
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="trained model folder (with .tflite)")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/concrete"))
    parser.add_argument("--pipeline-images", type=int, default=4000,
                        help="images per pipeline run (default 4000: the job's fixed costs, "
                             "~1.5 s, are then under a tenth of its time)")
    add_litert_rate_flags(parser, "runtime, batch size")
    args = parser.parse_args(argv)

    card = read_card(args.model)
    if "tflite_file" not in card:
        parser.error(f"{args.model} has no .tflite: run python -m training.export_tflite "
                     f"--model {args.model} first")
    images = sample_images(args.images, int(card["tile_size"]), 256).astype(np.float32)
    model = keras.saving.load_model(join(args.model, card["model_file"]), compile=False)
    with open(join(args.model, card["tflite_file"]), "rb") as handle:
        litert = TFLiteClassifier(handle.read(), args.threads)
    forwards = {"keras": model.predict_on_batch, "litert": litert.predict}
    if "int8_file" in card:  # listed only when it passed its gate
        with open(join(args.model, card["int8_file"]), "rb") as handle:
            forwards[LITERT_INT8] = TFLiteClassifier(handle.read(), args.threads).predict
    names = list(forwards)
    by_batch = {batch: interleaved_medians(
        lambda name: images_per_second(forwards[name], images, batch, args.seconds),
        names, args.repeats) for batch in BATCHES}
    raw = {name: {batch: by_batch[batch][name] for batch in BATCHES} for name in names}

    with tempfile.TemporaryDirectory() as folder:
        count = copy_images(args.images, folder, args.pipeline_images)
        # Each pipeline run alternates with its runtime's forward rate at the pipeline's
        # batch size, so their ratio compares runs a few seconds apart, not minutes.
        def pipeline_or_forward(name: str) -> float:
            runtime, _, forward = name.partition(" ")
            if forward:
                return images_per_second(forwards[runtime], images,
                                         DEFAULT_BATCH_SIZES[runtime], args.seconds)
            return pipeline_rate(args.model, folder, count,
                                 ["--runtime", runtime, "--litert-threads", str(args.threads),
                                  "--batch-size", str(DEFAULT_BATCH_SIZES[runtime]),
                                  *ONE_PROCESS])

        runs = interleaved_medians(pipeline_or_forward,
                                   [run for name in names for run in (f"{name} forward", name)],
                                   max(1, args.repeats - 1))
    pipeline = {name: runs[name] for name in names}
    beside = {name: runs[f"{name} forward"] for name in names}
    result = table(raw, pipeline, beside)
    print(f"images/s (median of {args.repeats} interleaved runs; pipeline: "
          f"{max(1, args.repeats - 1)}), input {card['tile_size']} px tiles, model at "
          f"{card['input_size']} px, {count} images per pipeline run, LiteRT threads "
          f"{args.threads}\n{machine()}\n")
    print(result)
    return result


if __name__ == "__main__":
    main()
