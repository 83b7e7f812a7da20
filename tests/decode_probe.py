"""Reads and decodes files the way the pipeline does, in a process of its own, and reports
what each one became, how long it took and how far the process's peak memory grew.

    python tests/decode_probe.py PATHS.json WARM_UP_IMAGE > RESULT.json

A separate process because peak RSS only ever grows: measured inside the test process it
would show whatever the suite allocated before. The peak is the kernel's ``VmHWM`` of this
process's own memory, not ``ru_maxrss``: Linux carries ``ru_maxrss`` across fork and exec,
so a child of pytest would report pytest's peak. The baseline is taken after the imports
and one real decode, so the growth is what the probed files cost.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any

from crackscan.decode import DecodeError, decode_rgb
from crackscan.sources import read_items


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory needs Linux")


def probe(path: str) -> list[dict[str, Any]]:
    """One entry per item ``read_items`` gives, with the outcome ``decode_rgb`` gives it."""
    results: list[dict[str, Any]] = []
    for item in read_items(path):
        if item.data is None:
            results.append({"uri": item.uri, "stage": item.stage, "error": item.error})
            continue
        try:
            height, width = decode_rgb(item.data).shape[:2]
        except DecodeError as exc:
            results.append({"uri": item.uri, "stage": "decode", "error": str(exc)})
        else:
            results.append({"uri": item.uri, "width": width, "height": height})
    return results


def main(paths_file: str, warm_up: str) -> None:
    with open(paths_file) as handle:
        paths: list[str] = json.load(handle)
    probe(warm_up)
    baseline = peak_rss_bytes()
    files = {}
    for path in paths:
        started = time.perf_counter()
        items = probe(path)
        files[path] = {"seconds": time.perf_counter() - started, "items": items}
    json.dump({"baseline_rss": baseline, "peak_rss": peak_rss_bytes(), "files": files},
              sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
