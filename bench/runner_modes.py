"""The DirectRunner's running modes side by side: the pipeline's marginal rate with its
default (a pool of worker processes, one per core), with one process (Beam's own default),
and with worker threads, against the model file's best raw forward rate, in one run.

    python -m bench.runner_modes --model MODEL_DIR [--images DIR] [--counts 1000 4000]

Each mode's marginal rate is ``(n_large - n_small) / (t_large - t_small)`` of two whole
``pipeline.score`` jobs over copies of ``--images``, so start-up (a worker pool costs a few
seconds) cancels out. Modes take turns, ``--repeats`` times, median reported. Every job
takes the batch size the launcher measures for its own thread count; a ``--dry-run`` per
mode first leaves that measurement in the cache, so no timed job pays it. The raw rate takes
its turn with the modes: the best of one interpreter on every core and one one-thread
interpreter per core at once, at batch 1, 8 and 32, on random tiles (the arithmetic does
not depend on the pixels).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from bench.measure import (ONE_PROCESS, count_folders, images_per_second, interleaved_medians,
                           machine, marginal_rate, markdown_table, parallel_images_per_second)
from crackscan.model_card import ModelCard
from crackscan.tflite_model import TFLiteClassifier
from pipeline.inference import SHIPPED_MODEL_DIR, litert_file, read_checked
from pipeline.score import run as score

RAW = "raw forward (best layout and batch)"
DEFAULT = "default (worker pool)"
BATCHES = (1, 8, 32)
MODES = {DEFAULT: [],
         "in_memory (one process)": ONE_PROCESS,
         "multi_threading": ["--direct_running_mode=multi_threading",
                             f"--direct_num_workers={os.cpu_count() or 1}"]}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SHIPPED_MODEL_DIR,
                        help="model folder (default: the shipped model)")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/concrete"),
                        help="images scored, copied as often as needed "
                             "(default: ../shared/data/concrete)")
    parser.add_argument("--counts", type=int, nargs=2, default=(1000, 4000),
                        metavar=("SMALL", "LARGE"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="timing of each raw rate (default 2)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work:
        jobs = count_folders(args.images, work, args.counts)
        plans = {}
        for mode, flags in MODES.items():
            with contextlib.redirect_stdout(io.StringIO()):
                plan = score(["--input", jobs[0][0], "--model", args.model, "--dry-run",
                              "--output", os.path.join(work, "dry-run"), *flags])
            plans[mode] = plan["inference"]

        spec = ModelCard.read(args.model)
        content = read_checked(*litert_file(spec, int8=False))
        tiles = np.random.default_rng(0).integers(
            0, 256, (2 * max(BATCHES), spec.tile_size, spec.tile_size, 3), dtype=np.uint8)
        cores = os.cpu_count() or 1

        def measure(mode: str) -> float:
            if mode == RAW:
                one = TFLiteClassifier(content, cores).predict
                rate = max(max(images_per_second(one, tiles, batch, args.seconds),
                               parallel_images_per_second(content, tiles, batch,
                                                          args.seconds, cores))
                           for batch in BATCHES)
            else:
                rate = marginal_rate(args.model, jobs[0], jobs[1], MODES[mode])
            print(f"  {mode}: {rate:.1f} images/s", flush=True)
            return rate

        rates = interleaved_medians(measure, [RAW, *MODES], args.repeats)
    rows = [[mode, plans[mode]["litert_threads"], plans[mode]["batch_size"],
             f"{rates[mode]:.1f}", f"{rates[mode] / rates[DEFAULT]:.2f}",
             f"{rates[mode] / rates[RAW]:.2f}"] for mode in MODES]
    rows.append([RAW, "", "", f"{rates[RAW]:.1f}", "", ""])
    table = markdown_table(["mode", "LiteRT threads", "batch size (measured)",
                            "marginal images/s", "/ default", "/ raw forward"], rows)
    print(f"marginal rate over {args.counts[0]} and {args.counts[1]} images of {args.images}, "
          f"median of {args.repeats} in turns; model {args.model}\n{machine()}\n")
    print(table)
    return table


if __name__ == "__main__":
    main()
