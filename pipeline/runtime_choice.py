"""Float or int8 LiteRT: timed on the machine that runs the model, not assumed.

An int8 file is faster only on a CPU with fast int8 dot products (AVX-512 VNNI or AVX-VNNI
on x86, the dot-product extensions on Arm). Without them XNNPACK's int8 kernels gained the
pipeline 1.02x on lab patches and lost 8% on survey photos (bench/README.md section 8), and
the int8 file's rows carry another model version (a few verdicts may differ, within its
gate). So where the card lists an int8 file that passed its gate and ``--runtime`` does not
choose, both files are timed side by side and int8 runs only when it is faster here by
:data:`INT8_MARGIN`:

- on the DirectRunner the launcher times both in the measurement that picks the batch size
  (``pipeline.batch_size``, every candidate size, the files in turns) and caches the rates
  per pair of files, thread count, CPU (int8 flags included) and LiteRT version;
- a remote runner's workers (Dataflow, Flink) are other machines: each worker process
  times both files at the job's batch size when it loads the model and logs the rates; a
  counter per worker and file (``tiles_on_<runtime>@<worker>`` in the ``crackscan_workers``
  namespace) says which ran where. Its rows carry the model version of the file it ran.
"""
from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from typing import Any, Callable, Sequence

import numpy as np
from apache_beam.ml.inference.base import PredictionResult

from crackscan.model_card import ModelCard
from pipeline.batch_size import (CANDIDATES, cache_key, cache_path, read_cache, time_litert,
                                 write_cache)
from pipeline.inference import (LITERT, LITERT_INT8, InterpreterPerThread,
                                LiteRTTileModelHandler, litert_file, read_checked)
from pipeline.workers import count_here

# int8 is taken when it is at least this many times as fast as float in two figures of one
# timing: each file's best rate (at its own fastest batch size, which the run then uses), and
# the median over batch sizes of int8's rate over float's, the two timed back to back at each
# size. The median keeps one lucky timing from choosing: two interpreters of one file, timed
# as the launcher times a pair (shipped model, one thread, a training run using both cores
# of this 2-core machine beside them), differed in their best rates by up to 1.43x in 1 of
# 10 timings (1.07x at most in the other 9), in the median by 1.09x at most and 1.03x
# typically (docs/scoring.md, "int8 where it pays"). Below 1.15x the gain is small anyway:
# the model is ~75% of a run's time (bench/README.md section 7), so a raw 1.15x makes the
# pipeline at most ~1.11x faster, not worth the rows of a second model version; on a VNNI
# CPU int8 is 1.4x or more, far clear of it.
INT8_MARGIN = 1.15
# A worker times each file at the job's batch size this many times, in turns, median kept:
# at least 0.25 s a file a round (batch_size.MIN_SECONDS) plus warm-up calls, a few seconds
# once per worker process against a survey's minutes of scoring.
WORKER_ROUNDS = 3

# Why a runtime ran, as summary.json, --dry-run and report.html say it.
FORCED = "--runtime"
MEASURED = "measured here"
MEASURED_CACHED = "measured here (cached)"
NO_INT8 = "no int8 file in the model card"
WORKERS_DECIDE = "remote workers decide when they load the model"

# (file contents by runtime, LiteRT threads, tile size, candidate batch sizes) -> images/s
# by runtime and batch size. pipeline.batch_size.time_litert times the real interpreters;
# tests pass their own.
Timer = Callable[[dict[str, bytes], int, int, tuple[int, ...]], dict[str, dict[int, float]]]


@dataclasses.dataclass(frozen=True)
class RuntimeChoice:
    """The runtime a run uses, why, and the images/s by runtime and batch size it was
    chosen on (empty when nothing was timed)."""

    runtime: str
    why: str
    rates: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)

    def best_rates(self) -> dict[str, float] | None:
        """Each timed runtime's images/s at its fastest batch size; None when not timed."""
        if not self.rates:
            return None
        return {runtime: round(max(by_batch.values()), 1)
                for runtime, by_batch in self.rates.items()}

    def speedup(self) -> float | None:
        """int8 over float in the median over the timed batch sizes; None when not timed."""
        return round(speedups(self.rates)[1], 3) if self.rates else None

    def batch_size(self) -> int | None:
        """The chosen runtime's fastest measured batch size; None when not timed."""
        chosen = self.rates.get(self.runtime)
        return max(chosen, key=chosen.__getitem__) if chosen else None


def speedups(rates: dict[str, dict[int, float]]) -> tuple[float, float]:
    """int8 over float: best rate over best rate, and the median over batch sizes of the
    two rates timed back to back at that size."""
    best = {runtime: max(by_batch.values()) for runtime, by_batch in rates.items()}
    per_size = [rates[LITERT_INT8][batch] / rate for batch, rate in rates[LITERT].items()]
    return best[LITERT_INT8] / best[LITERT], statistics.median(per_size)


def faster(rates: dict[str, dict[int, float]], margin: float = INT8_MARGIN) -> str:
    """``litert-int8`` when it is ``margin`` times as fast as float in both of
    :func:`speedups`, else ``litert``."""
    return LITERT_INT8 if min(speedups(rates)) >= margin else LITERT


def _decide(rates: dict[str, dict[int, float]], why: str) -> RuntimeChoice:
    return RuntimeChoice(faster(rates), why, rates)


def _pair_key(spec: ModelCard, threads: int) -> str:
    return cache_key(f"{spec.tflite_sha256}+int8:{spec.int8_sha256}", threads)


def on_launcher(spec: ModelCard, threads: int, timer: Timer = time_litert) -> RuntimeChoice:
    """Float or int8 for workers on this machine (the DirectRunner), from the cache when it
    has timed this pair of files here, else timed now at every candidate batch size (the
    batch size measurement, for both files in turns) and cached."""
    path, key = cache_path(), _pair_key(spec, threads)
    cached = read_cache(path)
    entry = cached.get(key)
    if isinstance(entry, dict) and set(entry.get("rates", {})) == {LITERT, LITERT_INT8}:
        return _decide({runtime: {int(batch): float(rate) for batch, rate in by_batch.items()}
                        for runtime, by_batch in entry["rates"].items()}, MEASURED_CACHED)
    started = time.perf_counter()
    contents = {runtime: read_checked(*litert_file(spec, int8=runtime == LITERT_INT8))
                for runtime in (LITERT, LITERT_INT8)}
    choice = _decide(timer(contents, threads, spec.tile_size, CANDIDATES), MEASURED)
    logging.info("runtime %s: %s on %d LiteRT thread(s) here (measured in %.1f s, cached "
                 "in %s)", choice.runtime, rates_text(choice.best_rates(), choice.speedup()),
                 threads,
                 time.perf_counter() - started, path)
    cached[key] = {"rates": {runtime: {str(b): round(r, 1) for b, r in by_batch.items()}
                             for runtime, by_batch in choice.rates.items()},
                   "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_cache(path, cached)
    return choice


def on_worker(contents: dict[str, bytes], batch_size: int, threads: int, tile_size: int,
              timer: Timer = time_litert, rounds: int = WORKER_ROUNDS) -> RuntimeChoice:
    """Float or int8 for this worker: both files timed at the job's batch size ``rounds``
    times in turns, each file's median kept (a worker cannot change the batch size Beam
    batches to, and has seconds, not the launcher's cache)."""
    timings = [timer(contents, threads, tile_size, (batch_size,)) for _ in range(rounds)]
    rates = {runtime: {batch_size: statistics.median(t[runtime][batch_size] for t in timings)}
             for runtime in contents}
    return _decide(rates, MEASURED)


def worker_counter(runtime: str) -> str:
    """The name of the per-worker counter of the tiles a worker scored on ``runtime``."""
    return f"tiles_on_{runtime}"


def rates_text(best: dict[str, float] | None, speedup: float | None) -> str:
    """``int8 412.0 vs float 301.5 images/s at their fastest batch sizes, int8/float 1.35x
    in the median over batch sizes (int8 wanted >= 1.15x in both)``."""
    if not best:
        return ""
    return (f"int8 {best[LITERT_INT8]:.1f} vs float {best[LITERT]:.1f} images/s at their "
            f"fastest batch sizes, int8/float {speedup:.2f}x in the median over batch sizes "
            f"(int8 wanted >= {INT8_MARGIN:.2f}x in both)")


def describe(inference: dict[str, Any]) -> str:
    """One sentence for the report: which runtime ran and why, with the two rates."""
    text = f"runtime {inference.get('runtime')}"
    if inference.get("runtime_from"):
        text += f": {inference['runtime_from']}"
    rates = rates_text(inference.get("runtime_rates"), inference.get("runtime_speedup"))
    return f"{text}; {rates}" if rates else text


class ChosenInterpreter(InterpreterPerThread):
    """A worker's interpreters of the file it chose, its runtime and model version."""

    def __init__(self, content: bytes, threads: int, runtime: str, version: str) -> None:
        super().__init__(content, threads)
        self.runtime = runtime
        self.version = version


class WorkerChoosesTileModelHandler(LiteRTTileModelHandler):
    """The card's float and int8 files; each worker process runs the one faster on its
    machine (:func:`on_worker`). Its results carry the model version of the file it runs."""

    def __init__(self, spec: ModelCard, batch_size: int, threads: int,
                 timer: Timer = time_litert) -> None:
        super().__init__(spec, batch_size, threads)
        self._files = {runtime: litert_file(spec, int8=runtime == LITERT_INT8)
                       for runtime in (LITERT, LITERT_INT8)}
        self._versions = {LITERT: spec.version, LITERT_INT8: spec.for_int8().version}
        self._batch_size = batch_size
        self._timer = timer

    def load_model(self) -> ChosenInterpreter:
        """Both files checked against the card, timed, and the faster one loaded."""
        contents = {runtime: read_checked(uri, sha256)
                    for runtime, (uri, sha256) in self._files.items()}
        choice = on_worker(contents, self._batch_size, self._threads, self._spec.tile_size,
                           self._timer)
        logging.info("this worker runs %s: %s, batch %d, %d LiteRT thread(s)", choice.runtime,
                     rates_text(choice.best_rates(), choice.speedup()), self._batch_size,
                     self._threads)
        return ChosenInterpreter(contents[choice.runtime], self._threads, choice.runtime,
                                 self._versions[choice.runtime])

    def run_inference(self, batch: Sequence[np.ndarray], model: ChosenInterpreter,
                      inference_args: dict[str, Any] | None = None) -> list[PredictionResult]:
        """The results name the file that ran, and each worker counts its tiles per file
        (a model's load runs outside Beam's metrics, so the count is kept here)."""
        count_here(worker_counter(model.runtime), len(batch))
        return [result._replace(model_id=model.version)
                for result in super().run_inference(batch, model, inference_args)]
