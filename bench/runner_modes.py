"""The DirectRunner's running modes side by side: the pipeline's marginal rate with its
default (a pool of worker processes, one per core), with one process (Beam's own default),
and with worker threads, in one run.

    python -m bench.runner_modes --model MODEL_DIR [--images DIR] [--counts 1000 4000]

Each mode's marginal rate is ``(n_large - n_small) / (t_large - t_small)`` of two whole
``pipeline.score`` jobs over copies of ``--images``, so start-up (a worker pool costs a few
seconds) cancels out. Modes take turns, ``--repeats`` times, median reported. Every job
takes the batch size the launcher measures for its own thread count; a ``--dry-run`` per
mode first leaves that measurement in the cache, so no timed job pays it.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from pathlib import Path

from bench.measure import (ONE_PROCESS, copy_images, interleaved_medians, machine,
                           marginal_rate, markdown_table)
from pipeline.inference import SHIPPED_MODEL_DIR
from pipeline.score import run as score

DEFAULT = "default (worker pool)"
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
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work:
        jobs = []
        for count in args.counts:
            folder = os.path.join(work, str(count))
            os.mkdir(folder)
            jobs.append((folder, copy_images(args.images, folder, count)))
        plans = {}
        for mode, flags in MODES.items():
            with contextlib.redirect_stdout(io.StringIO()):
                plan = score(["--input", jobs[0][0], "--model", args.model, "--dry-run",
                              "--output", os.path.join(work, "dry-run"), *flags])
            plans[mode] = plan["inference"]

        def measure(mode: str) -> float:
            rate = marginal_rate(args.model, jobs[0], jobs[1], MODES[mode])
            print(f"  {mode}: {rate:.1f} images/s", flush=True)
            return rate

        rates = interleaved_medians(measure, list(MODES), args.repeats)
    rows = [[mode, plans[mode]["litert_threads"], plans[mode]["batch_size"],
             f"{rate:.1f}", f"{rate / rates[DEFAULT]:.2f}"] for mode, rate in rates.items()]
    table = markdown_table(["mode", "LiteRT threads", "batch size (measured)",
                            "marginal images/s", "/ default"], rows)
    print(f"marginal rate over {args.counts[0]} and {args.counts[1]} images of {args.images}, "
          f"median of {args.repeats} in turns; model {args.model}\n{machine()}\n")
    print(table)
    return table


if __name__ == "__main__":
    main()
