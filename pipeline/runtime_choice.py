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

# int8 is taken when its best rate is at least this many times the float file's. Two
# interpreters of one file timed as the launcher times a pair (every candidate size, in
# turns, 0.25 s each, shipped model, one thread) differed by 1.03x in the median and up to
# 1.21x once in 8 on this 2-core machine with a training run using both cores beside it
# (docs/scoring.md, "int8 where it pays"): noise an idle machine rarely reaches. Below
# 1.15x the gain is small anyway: the model is ~75% of a run's time (bench/README.md section
# 7), so a raw 1.15x makes the pipeline at most ~1.11x faster, not worth the rows of a second
# model version; on a VNNI CPU int8 is 1.4x or more, far clear of it.
INT8_MARGIN = 1.15
# A worker times each file at the job's batch size this many times, in turns, median kept:
# ~1.5 s at load on the shipped float model, against a survey's minutes of scoring.
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

    def batch_size(self) -> int | None:
        """The chosen runtime's fastest measured batch size; None when not timed."""
        chosen = self.rates.get(self.runtime)
        return max(chosen, key=chosen.__getitem__) if chosen else None


def faster(best: dict[str, float], margin: float = INT8_MARGIN) -> str:
    """``litert-int8`` when its images/s are at least ``margin`` times float's, else
    ``litert``."""
    return LITERT_INT8 if best[LITERT_INT8] >= margin * best[LITERT] else LITERT


def _decide(rates: dict[str, dict[int, float]], why: str) -> RuntimeChoice:
    best = {runtime: max(by_batch.values()) for runtime, by_batch in rates.items()}
    return RuntimeChoice(faster(best), why, rates)


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
                 "in %s)", choice.runtime, rates_text(choice.best_rates()), threads,
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


def rates_text(best: dict[str, float] | None) -> str:
    """``int8 412.0 vs float 301.5 images/s (1.37x; int8 wanted >= 1.15x)``."""
    if not best:
        return ""
    ratio = best[LITERT_INT8] / best[LITERT]
    return (f"int8 {best[LITERT_INT8]:.1f} vs float {best[LITERT]:.1f} images/s "
            f"({ratio:.2f}x; int8 wanted >= {INT8_MARGIN:.2f}x)")


def describe(inference: dict[str, Any]) -> str:
    """One sentence for the report: which runtime ran and why, with the two rates."""
    text = f"runtime {inference.get('runtime')}"
    if inference.get("runtime_from"):
        text += f": {inference['runtime_from']}"
    rates = rates_text(inference.get("runtime_rates"))
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
                     rates_text(choice.best_rates()), self._batch_size, self._threads)
        return ChosenInterpreter(contents[choice.runtime], self._threads, choice.runtime,
                                 self._versions[choice.runtime])

    def run_inference(self, batch: Sequence[np.ndarray], model: ChosenInterpreter,
                      inference_args: dict[str, Any] | None = None) -> list[PredictionResult]:
        """The results name the file that ran, and each worker counts its tiles per file
        (a model's load runs outside Beam's metrics, so the count is kept here)."""
        count_here(worker_counter(model.runtime), len(batch))
        return [result._replace(model_id=model.version)
                for result in super().run_inference(batch, model, inference_args)]
