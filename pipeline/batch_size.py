"""Tiles per LiteRT call: measured for the model file, its thread count and this machine.

No one batch size is fastest: on a 2-core AVX2 machine, one thread runs the shipped float
model 1.2-1.4x faster per image at batch 1 than at 8 (a batch's activations stay in cache),
two threads are flat from 1 to 8 and slower at 32, and an int8 file runs 8 as fast as 1
(bench/README.md section 8). So the launcher times the interpreter the workers will run (the
card's file, on as many threads) at each candidate size and takes the fastest. The result is
cached per file, thread count, CPU (model and instruction set) and LiteRT version, so a
machine pays the ~3-4 s once per model, not once per night.

Measured on the launcher, the choice fits workers on the same machine (the DirectRunner);
a remote runner's workers are other machines, so those runs take ``--batch-size`` or the
runtime's default instead.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

CANDIDATES = (1, 2, 4, 8, 16, 32)
MIN_SECONDS = 0.25  # per candidate: ~3 s in all, once per model file and machine
CACHE_FILE = "batch_sizes.json"


def cache_path() -> Path:
    """``$XDG_CACHE_HOME/crackscan/batch_sizes.json`` (``~/.cache`` when unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "crackscan" / CACHE_FILE


def cpu_identity(cpuinfo: str | None = None) -> str:
    """The CPU's model name and a digest of its instruction-set flags.

    A cached choice must not follow a disk image to other hardware, and a virtual machine's
    model name ("AMD EPYC") can hide the generation, whose vector extensions (AVX-512, VNNI)
    decide which XNNPACK kernels run. ``cpuinfo`` is /proc/cpuinfo's text, read when omitted.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                cpuinfo = handle.read()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = " ".join(sorted(fields.get("flags", "").split()))
    return f"{name}|flags={hashlib.sha256(flags.encode()).hexdigest()[:12]}" if flags else name


def _litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "unknown"


def cache_key(sha256: str, threads: int) -> str:
    return f"{sha256}|threads={threads}|{cpu_identity()}|litert={_litert_version()}"


def images_per_second(forward: Callable[[np.ndarray], object], images: np.ndarray,
                      batch: int, seconds: float = MIN_SECONDS, warm_up: int = 2) -> float:
    """Images/s of ``forward`` over consecutive batches of ``images`` for at least
    ``seconds`` and two calls, after ``warm_up`` calls (the first call at a new size re-plans
    the tensors)."""
    batches = [images[i:i + batch] for i in range(0, len(images) - batch + 1, batch)]
    for chunk in (batches * warm_up)[:warm_up]:
        forward(chunk)
    done, calls, started = 0, 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - started < seconds:
        for chunk in batches:
            forward(chunk)
            done += len(chunk)
            calls += 1
    return done / (time.perf_counter() - started)


def measure(forward: Callable[[np.ndarray], object], tile_size: int,
            candidates: tuple[int, ...] = CANDIDATES) -> dict[int, float]:
    """Images/s at each candidate batch size, one batch of random tiles repeated: the
    arithmetic does not depend on the pixels, and the launcher has none decoded yet."""
    tiles = np.random.default_rng(0).integers(0, 256, (max(candidates), tile_size, tile_size, 3),
                                              dtype=np.uint8)
    return {batch: images_per_second(forward, tiles[:batch], batch, warm_up=1)
            for batch in candidates}


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def _write_cache(path: Path, cached: dict[str, dict]) -> None:
    """Atomically, so two launches at once leave one whole file; a cache that cannot be
    written only costs the next launch another measurement."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            json.dump(cached, out, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except OSError as exc:
        logging.warning("batch size not cached (%s): %s", path, exc)


def fastest_batch_size(content: Callable[[], bytes], sha256: str, threads: int,
                       tile_size: int) -> tuple[int, dict[int, float], bool]:
    """``(batch size, images/s per candidate, whether it came from the cache)`` for the
    LiteRT file whose hash is ``sha256`` run on ``threads`` threads; ``content`` reads the
    file, only when the cache has no answer."""
    path, key = cache_path(), cache_key(sha256, threads)
    cached = _read_cache(path)
    entry = cached.get(key)
    if isinstance(entry, dict) and entry.get("batch_size") in CANDIDATES:
        rates = {int(batch): float(rate) for batch, rate in entry.get("rates", {}).items()}
        return entry["batch_size"], rates, True
    from crackscan.tflite_model import TFLiteClassifier

    started = time.perf_counter()
    rates = measure(TFLiteClassifier(content(), threads).predict, tile_size)
    best = max(rates, key=rates.__getitem__)
    logging.info("batch size %d: fastest for this model file on %d LiteRT thread(s) here "
                 "(images/s %s; measured in %.1f s, cached in %s)", best, threads,
                 ", ".join(f"b={b} {r:.0f}" for b, r in rates.items()),
                 time.perf_counter() - started, path)
    cached[key] = {"batch_size": best, "rates": {str(b): round(r, 1) for b, r in rates.items()},
                   "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_cache(path, cached)
    return best, rates, False
