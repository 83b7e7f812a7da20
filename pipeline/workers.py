"""Which worker process did the work: a Beam counter per process, read back after the run.

Beam sums a counter over every worker that increments it, so a plain counter cannot show
how the work was spread. A counter whose name carries the worker's host and process id
stays apart from the others': a finished run's metrics then say how many tiles each worker
process scored, on the DirectRunner's worker processes as on Dataflow's VMs.
"""
from __future__ import annotations

import os
import socket

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricResult

NAMESPACE = "crackscan_workers"
TILES_SCORED = "tiles_scored"


def worker_name() -> str:
    """This process among all of a job's workers: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def count_here(what: str, amount: int) -> None:
    """Adds ``amount`` to this worker's own ``what`` counter."""
    Metrics.counter(NAMESPACE, f"{what}@{worker_name()}").inc(amount)


def counted(counter: MetricResult) -> int:
    """A finished run's count: the committed value where the runner reports one, else the
    attempted value, all that Beam's portable runners (Flink) may report."""
    for value in (counter.committed, counter.attempted):
        if value is not None:
            return value
    return 0


def per_worker(result: beam.runners.runner.PipelineResult, what: str) -> dict[str, int]:
    """``{worker: count}`` of ``what`` over a finished run's workers."""
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
    counts: dict[str, int] = {}
    for counter in query["counters"]:
        name, _, worker = counter.key.metric.name.partition("@")
        if name == what:
            counts[worker] = counts.get(worker, 0) + counted(counter)
    return counts
