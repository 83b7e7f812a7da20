"""What every benchmark here shares: rates, interleaved repeats, the machine, a table.

Benchmarks compare things side by side in one run (ratios), never against a time recorded
elsewhere; interleaving the things compared, repeat after repeat, keeps a neighbour's burst
on a shared machine from landing on one of them only.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pipeline.batch_size import images_per_second, int8_dot_product_flags
from pipeline.score import run as score
from crackscan.decode import IMAGE_SUFFIXES

# One process for the whole job, as the benchmarks that measure one process's time or peak
# memory need it: pipeline.score's own default on the DirectRunner is a pool of worker
# processes, whose memory is not the launcher's and whose start-up is a fixed cost.
ONE_PROCESS = ["--direct_running_mode=in_memory"]
PACKAGES = ("tensorflow-cpu", "keras", "ai-edge-litert", "apache-beam", "pillow", "numpy")


def interleaved_medians(measure: Callable[[str], float], names: Sequence[str],
                        repeats: int) -> dict[str, float]:
    """The median of ``repeats`` measurements of each name, taken in turns."""
    runs: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            runs[name].append(measure(name))
    return {name: statistics.median(values) for name, values in runs.items()}


def _forward_in_process(content: bytes, images: np.ndarray, batch: int, seconds: float,
                        barrier: Any, results: Any) -> None:
    from crackscan.tflite_model import TFLiteClassifier

    classifier = TFLiteClassifier(content, 1)
    classifier.predict(images[:batch])  # plans the tensors before the common start
    barrier.wait()
    results.put(images_per_second(classifier.predict, images, batch, seconds))


def parallel_images_per_second(content: bytes, images: np.ndarray, batch: int,
                               seconds: float, processes: int) -> float:
    """Images/s of ``processes`` one-thread LiteRT interpreters of ``content``, each in a
    process of its own, all started together: the layout of a pool of worker processes
    (one per core), against which one interpreter on every core is the other way to use
    the same cores."""
    context = multiprocessing.get_context("spawn")  # no fork of a parent's threads
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_forward_in_process,
                               args=(content, images, batch, seconds, barrier, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    rates = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


def run_child(command: Sequence[str], env: dict[str, str] | None = None
              ) -> tuple[float, int]:
    """Runs a command to completion; its wall seconds and peak RSS in bytes.

    ``wait4`` gives the rusage of that one child, where ``RUSAGE_CHILDREN`` would give the
    largest of every child waited for so far.
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode:
        sys.stderr.write(stderr.decode(errors="replace")[-4000:])
        raise subprocess.CalledProcessError(process.returncode, list(command))
    return seconds, usage.ru_maxrss * 1024  # kilobytes on Linux


def image_files(folder: Path) -> list[Path]:
    """The images under ``folder``, sorted, as the export check samples them."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def copy_images(source: Path, folder: str, count: int) -> int:
    """``count`` images into ``folder`` under new names, cycling through ``source``: a
    folder input, as a user would pass one."""
    files = image_files(source)
    if not files:
        raise SystemExit(f"{source}: no images")
    for index in range(count):
        path = files[index % len(files)]
        shutil.copyfile(path, os.path.join(folder, f"{index:06d}{path.suffix}"))
    return count


def count_folders(source: Path, work: str, counts: Sequence[int]) -> list[tuple[str, int]]:
    """``(folder, count)`` per count: a folder under ``work`` of that many images from
    ``source`` (:func:`copy_images`), the inputs of a marginal rate's jobs."""
    folders = []
    for count in counts:
        folder = os.path.join(work, str(count))
        os.mkdir(folder)
        folders.append((folder, copy_images(source, folder, count)))
    return folders


def pipeline_seconds(model_dir: str, folder: str, count: int, flags: Sequence[str]) -> float:
    """Wall seconds of one whole ``pipeline.score`` job over ``folder`` (its
    ``summary.json`` figure: checks, graph, model load, read, decode, infer, write, report),
    in this process on the DirectRunner unless ``flags`` say otherwise."""
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        summary = score(["--input", folder, "--model", model_dir, "--output",
                         os.path.join(out, "run"), *flags])
    assert summary is not None and summary["scored"] == count, summary
    return summary["wall_seconds"]


def pipeline_rate(model_dir: str, folder: str, count: int, flags: Sequence[str]) -> float:
    """Images/s of one whole job, as :func:`pipeline_seconds` times it."""
    return count / pipeline_seconds(model_dir, folder, count, flags)


def marginal_rate(model_dir: str, small: tuple[str, int], large: tuple[str, int],
                  flags: Sequence[str] = ()) -> float:
    """Images/s a job adds per extra image: ``(n_large - n_small) / (t_large - t_small)``
    of two whole jobs, ``(folder, count)`` each, so that what every job pays once (checks,
    graph, model load, report) cancels out and what is left is the per-image cost."""
    seconds = [pipeline_seconds(model_dir, folder, count, flags)
               for folder, count in (small, large)]
    return (large[1] - small[1]) / (seconds[1] - seconds[0])


def machine() -> str:
    """Cores, CPU model and library versions: what a reader needs to compare with."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    int8 = "+".join(int8_dot_product_flags()) or "none"
    return (f"{os.cpu_count()} cores, {model} (int8 dot-product flags: {int8}), "
            f"Python {platform.python_version()}, " + ", ".join(versions))


def add_litert_rate_flags(parser: argparse.ArgumentParser, per: str) -> None:
    """``--threads``, ``--seconds`` and ``--repeats``, alike in every benchmark that times
    LiteRT interpreters against each other; ``per`` names what each measurement times."""
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="LiteRT XNNPACK threads (default: the CPU count)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help=f"measuring time per {per} and repeat (default 3)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats of every measurement (default 3)")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |"
                              for row in rows])
