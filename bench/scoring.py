"""Scoring throughput: the pipeline against the model's own ceiling and a naive loop.

    python -m bench.scoring --model MODEL_DIR [--images ../shared/data/concrete]

In one run, interleaved and repeated (median), on the same images:

- ceiling: the runtime the pipeline uses (LiteRT when the model has a ``.tflite``: its int8
  file when the card lists one, which it does only when that passed its gate), raw
  forward passes over already-decoded batches of the pipeline's default batch size for that
  runtime;
- pipeline: ``pipeline.score`` on the DirectRunner over a folder of ``--count`` images,
  whole job (checks, graph, model load, read, decode, infer, write, report);
- naive: a loop of Pillow open + Keras ``model.predict`` on one image at a time;
- scaling: the pipeline with 2 worker threads, and in ``multi_processing`` mode with 1 and
  2 worker processes.

``--profile`` adds a cProfile of one in-memory run, its wall time split into model calls,
image decoding and everything else (Beam, reading, writing).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
from PIL import Image

from bench.measure import (copy_images, image_files, images_per_second, interleaved_medians,
                           ONE_PROCESS, machine, markdown_table, pipeline_rate)
from crackscan.model_card import join, read_card
from crackscan.tflite_model import TFLiteClassifier
from pipeline.inference import DEFAULT_BATCH_SIZES, LITERT, LITERT_INT8
from training.export_tflite import sample_images

IN_MEMORY = "pipeline, in_memory"
# The DirectRunner's other modes: worker threads in this process (the GIL is released while
# the model runs) and worker processes; LiteRT threads per worker default to cores/workers.
SCALING = {"pipeline, multi_threading x2": ["--direct_running_mode=multi_threading",
                                            "--direct_num_workers=2"],
           **{f"pipeline, multi_processing x{n}": ["--direct_running_mode=multi_processing",
                                                    f"--direct_num_workers={n}"]
              for n in (1, 2)}}
# Where the profile's time goes, by the function that spent it (cumulative).
PROFILE_PARTS = {"model calls": ("invoke", "predict_on_batch"),
                 "image decoding": ("decode_rgb",)}


def naive_rate(model: keras.Model, files: list[Path]) -> float:
    """What a first script would do: open, convert, predict, one image at a time."""
    started = time.perf_counter()
    for path in files:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32)[None]
        model.predict(pixels, verbose=0)
    return len(files) / (time.perf_counter() - started)


def profile(model_dir: str, folder: str, count: int) -> str:
    """One in-memory run under cProfile, its wall split by ``PROFILE_PARTS``."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    pipeline_rate(model_dir, folder, count, ONE_PROCESS)
    profiler.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    parts = {part: max((entry[3] for (_, _, name), entry in stats.items() if name in names),
                       default=0.0)
             for part, names in PROFILE_PARTS.items()}
    rows = [[part, f"{seconds:.2f}", f"{seconds / wall:.0%}"] for part, seconds in parts.items()]
    rest = wall - sum(parts.values())
    rows.append(["everything else (Beam, read, tile, write, report)", f"{rest:.2f}",
                 f"{rest / wall:.0%}"])
    rows.append(["total (under the profiler)", f"{wall:.2f}", "100%"])
    return markdown_table(["part", "seconds", "share"], rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="trained model folder")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/concrete"))
    parser.add_argument("--count", type=int, default=4000,
                        help="images per pipeline run (default 4000, at least 2000 for the "
                             "issue's figure)")
    parser.add_argument("--naive-count", type=int, default=200,
                        help="images per naive-loop measurement (default 200)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="measuring time of the ceiling per repeat (default 5)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="interleaved repeats of every measurement (default 2)")
    parser.add_argument("--no-scaling", action="store_true",
                        help="skip the multi_threading and multi_processing runs")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one in-memory run")
    args = parser.parse_args(argv)

    card = read_card(args.model)
    tile = int(card["tile_size"])
    keras_model = keras.saving.load_model(join(args.model, card["model_file"]), compile=False)
    decoded = sample_images(args.images, tile, 256).astype(np.float32)
    if "tflite_file" in card:  # the int8 file when one is listed, forced on the pipeline
        runtime = LITERT_INT8 if "int8_file" in card else LITERT
        with open(join(args.model, card["int8_file" if runtime == LITERT_INT8
                                        else "tflite_file"]), "rb") as handle:
            forward: Callable[[np.ndarray], object] = TFLiteClassifier(
                handle.read(), os.cpu_count() or 1).predict
    else:
        runtime, forward = "keras", keras_model.predict_on_batch
    batch = DEFAULT_BATCH_SIZES[runtime]  # the pipeline's, so the ceiling is like for like
    # The pipeline runs the ceiling's file, not whichever its default would time faster.
    pinned = ["--runtime", runtime] if runtime != "keras" else []
    files = image_files(args.images)
    naive_files = files[::max(1, len(files) // args.naive_count)][:args.naive_count]

    with tempfile.TemporaryDirectory() as folder:
        count = copy_images(args.images, folder, args.count)
        measures: dict[str, Callable[[], float]] = {
            "ceiling": lambda: images_per_second(forward, decoded, batch, args.seconds),
            IN_MEMORY: lambda: pipeline_rate(args.model, folder, count,
                                             [*ONE_PROCESS, "--batch-size", str(batch),
                                              *pinned]),
            "naive": lambda: naive_rate(keras_model, naive_files),
        }
        if not args.no_scaling:
            measures.update({name: (lambda flags=flags: pipeline_rate(args.model, folder,
                                                                      count, [*flags, *pinned]))
                             for name, flags in SCALING.items()})

        def measure(name: str) -> float:
            rate = measures[name]()
            print(f"  {name}: {rate:.1f} images/s", flush=True)
            return rate

        rates = interleaved_medians(measure, list(measures), args.repeats)
        breakdown = profile(args.model, folder, count) if args.profile else ""

    descriptions = {
        "ceiling": f"{runtime} forward, b={batch}, decoded batches",
        IN_MEMORY: f"{count} images, {runtime}, b={batch}",
        "naive": f"Pillow + Keras model.predict, 1 image at a time ({len(naive_files)})",
        **{name: f"{count} images, {runtime}" for name in SCALING},
    }
    rows = [[name, descriptions[name], f"{rate:.1f}", f"{rate / rates['ceiling']:.2f}",
             f"{rate / rates['naive']:.1f}x"] for name, rate in rates.items()]
    result = markdown_table(["measure", "what", "images/s", "/ ceiling", "/ naive"], rows)
    print(f"\nimages/s, median of {args.repeats} interleaved runs; model {args.model} at "
          f"{card['input_size']} px, {tile} px inputs\n{machine()}\n\n{result}")
    if breakdown:
        print(f"\nwhere an in-memory run's time goes (cProfile, {count} images):\n\n"
              f"{breakdown}")
    return result


if __name__ == "__main__":
    main()
