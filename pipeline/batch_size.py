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

import functools
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


# Instruction-set flags that give int8 dot products, as /proc/cpuinfo names them: on x86
# AVX-512 VNNI, AVX-VNNI (and its INT8 extension) and AMX; on Arm the dot-product and int8
# matrix extensions ("Features": asimddp, i8mm, svei8mm; "dotprod" where a kernel says so).
# XNNPACK's int8 kernels run 1.4x or more over float only on these (bench/README.md
# section 7: without them int8 gained 1.02x in the pipeline).
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8",
              "asimddp", "dotprod", "i8mm", "svei8mm")


@functools.lru_cache(maxsize=1)
def read_cpuinfo() -> str:
    """/proc/cpuinfo's text, read once per process ("" where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


def _first_fields(cpuinfo: str) -> dict[str, str]:
    """The first core's ``key: value`` lines: every core of a machine reports the same."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _flags(fields: dict[str, str]) -> set[str]:
    """x86 lists its extensions under "flags", Arm under "Features"."""
    return set(fields.get("flags", "").split()) | set(fields.get("Features", "").split())


def int8_dot_product_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """Which of :data:`INT8_FLAGS` this CPU has, in that order; ``cpuinfo`` is
    /proc/cpuinfo's text, read when omitted."""
    present = _flags(_first_fields(read_cpuinfo() if cpuinfo is None else cpuinfo))
    return tuple(flag for flag in INT8_FLAGS if flag in present)


def cpu_identity(cpuinfo: str | None = None) -> str:
    """The CPU's model name, its int8 dot-product flags by name, and a digest of all its
    instruction-set flags.

    A cached choice must not follow a disk image to other hardware, and a virtual machine's
    model name ("AMD EPYC") can hide the generation, whose vector extensions (AVX-512, VNNI)
    decide which XNNPACK kernels run, and whether int8 beats float. The int8 flags are named
    so that a reader of the cache sees why two machines' entries differ. ``cpuinfo`` is
    /proc/cpuinfo's text, read (once) when omitted.
    """
    fields = _first_fields(read_cpuinfo() if cpuinfo is None else cpuinfo)
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = _flags(fields)
    if not flags:
        return name
    int8 = "+".join(flag for flag in INT8_FLAGS if flag in flags) or "none"
    digest = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:12]
    return f"{name}|int8={int8}|flags={digest}"


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


def measure_each(forwards: dict[str, Callable[[np.ndarray], object]], tile_size: int,
                 candidates: tuple[int, ...] = CANDIDATES) -> dict[str, dict[int, float]]:
    """Images/s of each named forward at each candidate batch size, one batch of random
    tiles repeated: the arithmetic does not depend on the pixels, and the launcher has none
    decoded yet. At each size the forwards take turns, so a neighbour's burst slows every
    file's timing of that size, not one file's."""
    tiles = np.random.default_rng(0).integers(0, 256, (max(candidates), tile_size, tile_size, 3),
                                              dtype=np.uint8)
    rates: dict[str, dict[int, float]] = {name: {} for name in forwards}
    for batch in candidates:
        for name, forward in forwards.items():
            rates[name][batch] = images_per_second(forward, tiles[:batch], batch, warm_up=1)
    return rates


def time_litert(contents: dict[str, bytes], threads: int, tile_size: int,
                candidates: tuple[int, ...] = CANDIDATES) -> dict[str, dict[int, float]]:
    """Images/s of each named LiteRT file on ``threads`` threads at each candidate size,
    the files in turns (:func:`measure_each`): the interpreters the workers will run."""
    from crackscan.tflite_model import TFLiteClassifier

    return measure_each({name: TFLiteClassifier(content, threads).predict
                         for name, content in contents.items()}, tile_size, candidates)


def read_cache(path: Path) -> dict[str, dict]:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def write_cache(path: Path, cached: dict[str, dict]) -> None:
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
    cached = read_cache(path)
    entry = cached.get(key)
    if isinstance(entry, dict) and entry.get("batch_size") in CANDIDATES:
        rates = {int(batch): float(rate) for batch, rate in entry.get("rates", {}).items()}
        return entry["batch_size"], rates, True
    started = time.perf_counter()
    rates = time_litert({"file": content()}, threads, tile_size)["file"]
    best = max(rates, key=rates.__getitem__)
    logging.info("batch size %d: fastest for this model file on %d LiteRT thread(s) here "
                 "(images/s %s; measured in %.1f s, cached in %s)", best, threads,
                 ", ".join(f"b={b} {r:.0f}" for b, r in rates.items()),
                 time.perf_counter() - started, path)
    cached[key] = {"batch_size": best, "rates": {str(b): round(r, 1) for b, r in rates.items()},
                   "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_cache(path, cached)
    return best, rates, False
