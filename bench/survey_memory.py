"""Tiled survey throughput and peak memory: megapixels/s and peak RSS as the photo count grows.

    python -m bench.survey_memory --model MODEL_DIR [--counts 1 10 50] [--runtime litert]
        [further pipeline.score options, e.g. --batch-size 64]

For each count N, a folder of N copies of one 4800x6000 survey photo (distinct file names)
is scored by ``python -m pipeline.score`` in a child process of its own, so the peak RSS
measured (``wait4``) is that one run's: Beam, the runtime and the model included. Copies
have identical content, but nothing in a run without ``--skip-scored`` looks at content:
every file is read, decoded, tiled and scored on its own, exactly as N different photos
would be. Rates come from the child's wall time (start-up, model load and report included)
and are compared between counts of the same run, never with figures recorded elsewhere.
The target: peak RSS stays flat as N grows, under ``--rss-limit-gb`` (3 GB).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from apache_beam.io.filesystems import FileSystems

from bench.measure import ONE_PROCESS, machine, markdown_table, run_child
from crackscan.model_card import join
from pipeline.inference import LITERT, RUNTIMES
from pipeline.records import parse_predictions
from pipeline.inference import SHIPPED_MODEL_DIR
from pipeline.run_status import SUMMARY_FILE

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PHOTO = Path("../shared/data/survey/crack/CRACK500_20160328_153612_1281_1081.jpg")
GB = 1e9


@contextlib.contextmanager
def heartbeat(label: str, expected: float | None, every: float = 20.0) -> Iterator[None]:
    """Prints ``label`` and the elapsed time every ``every`` seconds while the block runs."""
    stop = threading.Event()
    started = time.perf_counter()
    guess = f", about {expected:.0f} s expected" if expected else ""
    print(f"{label}{guess} ...", file=sys.stderr, flush=True)

    def tick() -> None:
        while not stop.wait(every):
            print(f"  {label}: {time.perf_counter() - started:.0f} s", file=sys.stderr,
                  flush=True)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def copies(photo: Path, folder: Path, count: int) -> None:
    """``count`` byte-for-byte copies of ``photo`` under distinct names (real files, not
    links, so every one is read from disk like a photo of its own)."""
    folder.mkdir(parents=True)
    for index in range(count):
        shutil.copyfile(photo, folder / f"survey_{index:04d}{photo.suffix.lower()}")


def expected_seconds(runs: dict[int, list[dict[str, Any]]], count: int) -> float | None:
    """A guess for the progress line: a straight line through the runs done so far (a
    fixed start-up cost plus a cost per photo), or proportional after a single one."""
    done = {n: statistics.median(r["seconds"] for r in results)
            for n, results in runs.items() if results}
    if count in done:
        return done[count]
    if len(done) >= 2:
        (n0, s0), (n1, s1) = sorted(done.items())[-2:]
        per_photo = (s1 - s0) / (n1 - n0)
        return s1 + per_photo * (count - n1)
    if done:
        ((n0, s0),) = done.items()
        return s0 * count / n0
    return None


def score_folder(folder: Path, out: Path, args: argparse.Namespace,
                 passthrough: list[str]) -> dict[str, Any]:
    """One ``pipeline.score`` run in its own process: wall seconds, peak RSS, its summary."""
    command = [sys.executable, "-m", "pipeline.score", "--input", str(folder),
               "--model", args.model, "--output", str(out), "--runtime", args.runtime,
               *ONE_PROCESS, *passthrough]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    seconds, peak_rss = run_child(command, env=env)
    with FileSystems.open(join(str(out), SUMMARY_FILE)) as handle:
        summary = json.loads(handle.read())
    megapixels = 0.0
    for path in summary["outputs"]["predictions"]:
        with FileSystems.open(path) as handle:
            text = handle.read().decode("utf-8")
        megapixels += sum(row["width"] * row["height"] for row in parse_predictions(path, text))
    return {"seconds": seconds, "peak_rss": peak_rss, "summary": summary,
            "megapixels": megapixels / 1e6}


def table(results: dict[int, dict[str, Any]]) -> str:
    base = results[min(results)]["peak_rss"]
    header = ["photos", "tiles", "megapixels", "wall s", "MP/s", "tiles/s", "peak RSS GB",
              f"RSS / N={min(results)}"]
    rows = []
    for count, result in sorted(results.items()):
        summary, seconds = result["summary"], result["seconds"]
        rows.append([summary["scored"], summary["tiles"], f"{result['megapixels']:.1f}",
                     f"{seconds:.1f}", f"{result['megapixels'] / seconds:.2f}",
                     f"{summary['tiles'] / seconds:.1f}", f"{result['peak_rss'] / GB:.2f}",
                     f"{result['peak_rss'] / base:.2f}x"])
    return markdown_table(header, rows)


def verdict(results: dict[int, dict[str, Any]], limit_gb: float, tolerance: float) -> str:
    """Steady-state rate (the fixed cost of a run cancels out) and the memory targets."""
    counts = sorted(results)
    lines = []
    if len(counts) > 1:
        small, large = results[counts[0]], results[counts[-1]]
        extra_mp = large["megapixels"] - small["megapixels"]
        extra_s = large["seconds"] - small["seconds"]
        if extra_s > 0:
            lines.append(f"marginal rate N={counts[0]} -> N={counts[-1]}: "
                         f"{extra_mp / extra_s:.2f} MP/s, "
                         f"{(large['summary']['tiles'] - small['summary']['tiles']) / extra_s:.1f}"
                         f" tiles/s (start-up and model load excluded)")
    peaks = [results[count]["peak_rss"] for count in counts]
    growth = max(peaks) / peaks[0]
    flat = growth <= tolerance
    under = max(peaks) / GB < limit_gb
    lines.append(f"peak RSS: largest {max(peaks) / GB:.2f} GB = {growth:.2f}x N={counts[0]}; "
                 f"flat (<= {tolerance:.2f}x): {'yes' if flat else 'NO'}; "
                 f"under {limit_gb:g} GB: {'yes' if under else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Arguments not listed here go to every pipeline.score run unchanged.")
    parser.add_argument("--model", default=SHIPPED_MODEL_DIR,
                        help="trained model folder (default: the shipped model)")
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO,
                        help=f"survey photo to copy (default {DEFAULT_PHOTO})")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 50],
                        help="photos per run (default 1 10 50)")
    parser.add_argument("--runtime", choices=RUNTIMES, default=LITERT,
                        help=f"pipeline.score --runtime (default {LITERT})")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per count, interleaved; median wall time, largest peak RSS "
                             "(default 1)")
    parser.add_argument("--rss-limit-gb", type=float, default=3.0,
                        help="peak RSS target per run, in GB (default 3)")
    parser.add_argument("--flat-tolerance", type=float, default=1.25,
                        help="largest peak RSS over the smallest count's that still counts "
                             "as flat (default 1.25)")
    parser.add_argument("--workdir", default=None,
                        help="keep the copies and the runs' outputs in a new folder under "
                             "this one (default: a temporary folder, removed at the end)")
    args, passthrough = parser.parse_known_args(argv)
    if not args.photo.is_file():
        parser.error(f"--photo {args.photo}: no such file")
    counts = sorted(set(args.counts))

    runs: dict[int, list[dict[str, Any]]] = {count: [] for count in counts}
    scratch = (contextlib.nullcontext(tempfile.mkdtemp(dir=args.workdir,
                                                       prefix="survey-memory-"))
               if args.workdir else tempfile.TemporaryDirectory(prefix="survey-memory-"))
    with scratch as work:
        for count in counts:
            copies(args.photo, Path(work) / f"in-{count}", count)
        for repeat in range(args.repeats):
            for count in counts:
                out = Path(work) / f"out-{count}-{repeat}"
                with heartbeat(f"[{repeat + 1}/{args.repeats}] scoring {count} photo(s) "
                               f"({args.runtime})", expected_seconds(runs, count)):
                    result = score_folder(Path(work) / f"in-{count}", out, args, passthrough)
                summary = result["summary"]
                if summary["scored"] != count:
                    raise RuntimeError(f"{count} photos: scored {summary['scored']}, failed "
                                       f"{summary['failed']}; see {out}/ (kept with "
                                       f"--workdir)")
                print(f"  {count} photo(s): {result['seconds']:.1f} s, peak RSS "
                      f"{result['peak_rss'] / GB:.2f} GB", file=sys.stderr, flush=True)
                runs[count].append(result)
    results = {count: {**done[0],
                       "seconds": statistics.median(r["seconds"] for r in done),
                       "peak_rss": max(r["peak_rss"] for r in done)}
               for count, done in runs.items()}

    print(f"pipeline.score on N copies of {args.photo.name} "
          f"({results[counts[0]]['megapixels'] / results[counts[0]]['summary']['scored']:.1f}"
          f" MP each), runtime {args.runtime}"
          f"{' ' + ' '.join(passthrough) if passthrough else ''}; DirectRunner, one child "
          f"process per run; wall = the whole process (start-up, model load, report); "
          f"{args.repeats} run(s) per count\n{machine()}\n")
    result = table(results)
    print(result)
    print()
    print(verdict(results, args.rss_limit_gb, args.flat_tolerance))
    return result


if __name__ == "__main__":
    main()
