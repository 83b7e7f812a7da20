"""The same folder scored on the DirectRunner (multi_processing, 2 workers) and on the local
Flink cluster of ``launch/flink_local.sh``, side by side in one run: images/s, start-up
seconds and the peak memory of everything each runner keeps running.

    python -m bench.flink [--images DIR] [--counts 40 400] [--repeats 1]

Each job is the command a user runs, in a process of its own. Images/s is the marginal
rate of two jobs, ``(n_large - n_small) / (t_large - t_small)``, so the cost every job pays
once (Python and TensorFlow imports, checks, the job server's JVM, the worker start, the
report) cancels out and is reported apart as the job's start-up seconds; Flink also pays
the cluster's own start once. Peak memory is sampled every 0.2 s as the sum of the RSS of
every process the runner needs: the launcher and its children (the DirectRunner's workers,
the FlinkRunner's job server JVM), and for Flink the JobManager, both TaskManagers and the
worker pool with its SDK workers. Without the job server jar the Flink jobs cannot run, and
the table says so beside what could be measured (the cluster's start-up and idle memory).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from bench.measure import count_folders, machine, markdown_table
from bench.processes import children_of

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "launch" / "flink_local.sh"
MASTER = "localhost:8081"
DIRECT = "DirectRunner, multi_processing x2"
FLINK = "FlinkRunner, local cluster (2 TM x 2 slots)"
RUNNERS = {DIRECT: ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
           FLINK: ["--runner", "FlinkRunner", "--flink_master", MASTER]}
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(roots: Iterable[int]) -> int:
    """Bytes resident in ``roots`` and all their descendants."""
    tree, total, seen = children_of(), 0, set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(tree.get(pid, []))
    return total


class PeakRss:
    """The highest :func:`tree_rss` of ``roots()`` while the ``with`` block runs."""

    def __init__(self, roots: Callable[[], list[int]]) -> None:
        self.roots, self.peak = roots, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, tree_rss(self.roots()))

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def flink_local(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True,
                          check=False, timeout=900, env={**os.environ, "PYTHON": sys.executable})


def cluster_pids() -> list[int]:
    status = flink_local("status").stdout
    return [int(line.split("pid ")[1].split()[0]) for line in status.splitlines()
            if " pid " in line and line.endswith("(running)")]


def job(folder: str, count: int, flags: Sequence[str], cluster: list[int]
        ) -> tuple[float, int]:
    """Wall seconds of one whole job as a user runs it, and the peak memory meanwhile."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "pipeline.score", "--input", folder,
                   "--output", os.path.join(out, "run"), *flags]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, cwd=REPO,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        with PeakRss(lambda: [process.pid, *cluster]) as memory:
            _, log = process.communicate()
        seconds = time.perf_counter() - started
        if process.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{log[-3000:]}")
        summary = json.loads(Path(out, "run", "summary.json").read_text())
        assert summary["scored"] == count and summary["accounting_ok"], summary
    return seconds, memory.peak


def measure(folders: list[tuple[str, int]], flags: Sequence[str], repeats: int,
            cluster: list[int]) -> dict[str, float]:
    """Marginal images/s, start-up seconds and peak GB over ``repeats`` pairs of jobs (the
    best pair: on a shared machine a neighbour only ever slows a run down)."""
    best: dict[str, float] = {}
    for _ in range(repeats):
        (small_s, _), (large_s, peak) = (job(folder, count, flags, cluster)
                                         for folder, count in folders)
        rate = (folders[1][1] - folders[0][1]) / (large_s - small_s)
        if rate > best.get("rate", 0):
            best = {"rate": rate, "startup": small_s - folders[0][1] / rate,
                    "peak_gb": peak / 2**30}
    return best


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=REPO / "tests" / "fixtures" / "data"
                        / "concrete", help="images scored, copied as often as needed "
                                           "(default: the checked-in concrete patches)")
    parser.add_argument("--counts", type=int, nargs=2, default=(40, 400),
                        metavar=("SMALL", "LARGE"))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)

    if flink_local("status").returncode == 0:
        raise SystemExit("a local Flink cluster already runs: stop it first "
                         "(launch/flink_local.sh stop), its start-up is measured here")
    started = time.perf_counter()
    start = flink_local("start")
    cluster_start = time.perf_counter() - started
    if start.returncode:
        raise SystemExit(start.stderr)
    jar = flink_local("fetch-jar")
    try:
        cluster = cluster_pids()
        time.sleep(5)
        idle_gb = tree_rss(cluster) / 2**30
        with tempfile.TemporaryDirectory() as work:
            folders = count_folders(args.images, work, args.counts)
            results = {DIRECT: measure(folders, RUNNERS[DIRECT], args.repeats, [])}
            if jar.returncode == 0:
                results[FLINK] = measure(folders, RUNNERS[FLINK], args.repeats, cluster)
    finally:
        flink_local("stop")

    rows = [[DIRECT, "-", f"{results[DIRECT]['rate']:.1f}",
             f"{results[DIRECT]['startup']:.1f}", "-", f"{results[DIRECT]['peak_gb']:.2f}"]]
    flink = results.get(FLINK)
    not_run = "not run (no job server jar)"
    rows.append([FLINK, f"{cluster_start:.1f}",
                 f"{flink['rate']:.1f}" if flink else not_run,
                 f"{flink['startup']:.1f}" if flink else not_run, f"{idle_gb:.2f}",
                 f"{flink['peak_gb']:.2f}" if flink else not_run])
    if flink:
        direct = results[DIRECT]
        rows.append(["Flink / Direct", "-", f"{flink['rate'] / direct['rate']:.2f}x",
                     f"{flink['startup'] / direct['startup']:.2f}x", "-",
                     f"{flink['peak_gb'] / direct['peak_gb']:.2f}x"])
    table = markdown_table(["runner", "cluster start s", "images/s (marginal)",
                            "job start-up s", "idle cluster GB", "peak GB while scoring"],
                           rows)
    lines = [machine(), f"jobs of {args.counts[0]} and {args.counts[1]} images, "
                        f"best of {args.repeats}", "", table]
    if jar.returncode:
        lines += ["", f"Flink jobs not run: {jar.stderr.strip().splitlines()[-1]}"]
    report = "\n".join(lines)
    print(report)
    return table


if __name__ == "__main__":
    main()
