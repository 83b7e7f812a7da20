"""One archive of many small images: peak RSS, images/s and the accounting as members grow.

    python -m bench.archive_scale --model MODEL_DIR [--counts 5000 50000]
        [--corrupt-every 10] [further pipeline.score options, e.g. --runtime litert]

For each count N, a ``.zip`` and a ``.tar.gz`` of the same N generated 64x64 JPEGs (every
``--corrupt-every``-th one broken: cut short, or bytes that are no image) are each scored
by ``python -m pipeline.score`` in a child process of its own, so the peak RSS measured
(``wait4``) is that one run's: Beam, the runtime and the model included. One archive is
read by one worker from one stream, and every member ends as a row of predictions or
errors, so what this measures is what must not grow with N: what reading keeps per member
(tar headers, names), what the summary keeps per error, what the report lists. The target:
peak RSS flat from the smallest count to the largest, and exact accounting at every size
(seen = scored + failed, equal to the rows in the files, the corrupt ones exactly failed).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from bench.measure import ONE_PROCESS, machine, markdown_table, run_child
from pipeline.inference import SHIPPED_MODEL_DIR
from pipeline.run_status import SUMMARY_FILE

REPO = Path(__file__).resolve().parent.parent
GB = 1e9
SIZE = 64
KINDS = ("zip", "tar.gz")


def members(count: int, corrupt_every: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of ``count`` distinct 64x64 JPEGs of concrete-grey noise; every
    ``corrupt_every``-th (counting from the first) is broken instead, alternately cut to
    its first 200 bytes (a header, no scan) or replaced by bytes that are no image."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        name = f"flight-{index // 1000:03d}/img-{index:06d}.jpg"
        pixels = rng.normal(128, 24, (SIZE, SIZE, 3)).clip(0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        data = buffer.getvalue()
        if index % corrupt_every == 0:
            data = data[:200] if (index // corrupt_every) % 2 == 0 else rng.bytes(700)
        yield name, data


def corrupt_count(count: int, corrupt_every: int) -> int:
    return -(-count // corrupt_every)


def write_archives(folder: Path, count: int, corrupt_every: int = 10) -> dict[str, Path]:
    """A ``.zip`` and a ``.tar.gz`` holding the same ``members``; their paths by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"zip": folder / f"survey-{count}.zip", "tar.gz": folder / f"survey-{count}.tar.gz"}
    with (zipfile.ZipFile(paths["zip"], "w", zipfile.ZIP_DEFLATED) as packed,
          tarfile.open(paths["tar.gz"], "w:gz") as tarred):
        for name, data in members(count, corrupt_every):
            packed.writestr(name, data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tarred.addfile(info, io.BytesIO(data))
    return paths


def score_archive(archive: Path, out: Path, model: str, passthrough: list[str]
                  ) -> dict[str, Any]:
    """One ``pipeline.score`` run in its own process: wall seconds, peak RSS, its summary."""
    command = [sys.executable, "-m", "pipeline.score", "--input", str(archive),
               "--model", model, "--output", str(out), *ONE_PROCESS, *passthrough]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    seconds, peak_rss = run_child(command, env=env)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    return {"seconds": seconds, "peak_rss": peak_rss, "summary": summary}


def exact(summary: dict[str, Any], count: int, corrupt: int) -> bool:
    """The accounting holds and says what the archive holds: every member seen, the corrupt
    ones failed, the rest scored, and as many rows in the files."""
    in_files = summary["accounting"]["in_files"]
    return (summary["accounting_ok"] and summary["seen"] == count
            and summary["failed"] == corrupt and summary["scored"] == count - corrupt
            and in_files["predictions"] == summary["scored"]
            and in_files["errors"] == summary["failed"])


def table(results: dict[tuple[str, int], dict[str, Any]], corrupt_every: int) -> str:
    header = ["archive", "members", "seen", "scored", "failed", "rows in files",
              "accounting exact", "wall s", "images/s", "peak RSS GB", "RSS / smallest"]
    rows = []
    for (kind, count), result in sorted(results.items()):
        summary = result["summary"]
        smallest = results[(kind, min(c for k, c in results if k == kind))]["peak_rss"]
        in_files = summary["accounting"]["in_files"]
        rows.append([kind, f"{count:,}", f"{summary['seen']:,}", f"{summary['scored']:,}",
                     f"{summary['failed']:,}",
                     f"{in_files['predictions']:,} + {in_files['errors']:,}",
                     "yes" if exact(summary, count, corrupt_count(count, corrupt_every))
                     else "NO", f"{result['seconds']:.1f}",
                     f"{summary['images_per_second']:.1f}",
                     f"{result['peak_rss'] / GB:.2f}", f"{result['peak_rss'] / smallest:.2f}x"])
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Arguments not listed here go to every pipeline.score run unchanged.")
    parser.add_argument("--model", default=SHIPPED_MODEL_DIR,
                        help="trained model folder (default: the shipped model)")
    parser.add_argument("--counts", type=int, nargs="+", default=[5000, 50000],
                        help="members per archive (default 5000 50000)")
    parser.add_argument("--corrupt-every", type=int, default=10,
                        help="every N-th member is broken (default 10: a tenth)")
    parser.add_argument("--workdir", default=None,
                        help="keep the archives and the runs' outputs in a new folder under "
                             "this one (default: a temporary folder, removed at the end)")
    args, passthrough = parser.parse_known_args(argv)
    counts = sorted(set(args.counts))
    results: dict[tuple[str, int], dict[str, Any]] = {}
    scratch = (contextlib.nullcontext(tempfile.mkdtemp(dir=args.workdir,
                                                       prefix="archive-scale-"))
               if args.workdir else tempfile.TemporaryDirectory(prefix="archive-scale-"))
    with scratch as work:
        for count in counts:
            archives = write_archives(Path(work) / "in", count, args.corrupt_every)
            for kind in KINDS:
                print(f"scoring {count:,} members of a {kind} ...", file=sys.stderr,
                      flush=True)
                result = score_archive(archives[kind], Path(work) / f"out-{kind}-{count}",
                                       args.model, passthrough)
                print(f"  {result['seconds']:.1f} s, peak RSS {result['peak_rss'] / GB:.2f} GB",
                      file=sys.stderr, flush=True)
                results[(kind, count)] = result
            for path in archives.values():
                path.unlink()
    print(f"pipeline.score on one archive of N generated {SIZE}x{SIZE} JPEGs, every "
          f"{args.corrupt_every}th broken"
          f"{'; ' + ' '.join(passthrough) if passthrough else ''}; DirectRunner, one child "
          f"process per run; wall = the whole process (start-up, model load, report)\n"
          f"{machine()}\n")
    result = table(results, args.corrupt_every)
    print(result)
    return result


if __name__ == "__main__":
    main()
