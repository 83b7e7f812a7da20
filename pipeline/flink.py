"""What ``--runner FlinkRunner --flink_master HOST:PORT`` needs besides, chosen by the project
so that the command line stays those two flags.

Beam's FlinkRunner on its own would download its job server jar from a URL these machines
cannot reach, give the Python code to one process (LOOPBACK), run at parallelism 1 and
start the job server JVM without the ``--add-opens`` that Java 17 requires. Here the jar is
the one ``launch/flink_local.sh`` fetched into the cache, the Python code runs in the worker
pool beside the TaskManagers (the EXTERNAL environment), and the parallelism is the
cluster's own slot count, asked of its REST API; which also finds a cluster that is not
running before anything is submitted. Every choice yields to the same flag given
explicitly.
"""
from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import apache_beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

FLINK_RUNNERS = frozenset({"FlinkRunner", "flink"})
# The Flink line the local cluster runs and Beam publishes a job server for.
FLINK_VERSION = "1.20"
# pipeline.worker_pool's default address, beside every TaskManager.
WORKER_POOL = "127.0.0.1:50000"
# Flink's own config.yaml opens these on Java 17; the job server runs Flink's client code.
JAVA_17_OPENS = tuple(f"--add-opens=java.base/{package}=ALL-UNNAMED" for package in (
    "java.lang", "java.net", "java.io", "java.nio", "sun.nio.ch", "java.lang.reflect",
    "java.text", "java.time", "java.util", "java.util.concurrent",
    "java.util.concurrent.atomic", "java.util.concurrent.locks"))
# Beam's names for a Flink master that is not a cluster's address.
MAGIC_MASTERS = frozenset({"[auto]", "[local]"})


class FlinkSetupError(ValueError):
    """A Flink submission that cannot work, found before the job server starts."""


def is_flink(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner in FLINK_RUNNERS


def cache_dir() -> Path:
    """The folder launch/flink_local.sh caches Flink and the jar in: the same rule as there."""
    explicit = os.environ.get("CRACKSCAN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "crackscan"


def job_server_artifact(flink_version: str) -> str:
    """The Maven coordinates of the job server that matches this Beam SDK: a job server of
    another Beam version is not guaranteed to understand the pipeline this SDK sends."""
    return (f"org.apache.beam:beam-runners-flink-{flink_version}-job-server:"
            f"{apache_beam.__version__}")


def job_server_jar(flink_version: str) -> Path:
    return (cache_dir() / "jars" /
            f"beam-runners-flink-{flink_version}-job-server-{apache_beam.__version__}.jar")


def rest_url(flink_master: str) -> str:
    master = flink_master.strip().rstrip("/")
    return master if "://" in master else f"http://{master}"


def cluster_overview(flink_master: str) -> dict[str, Any]:
    """The cluster's ``/overview`` (TaskManagers, slots, Flink version)."""
    url = f"{rest_url(flink_master)}/overview"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return json.load(reply)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise FlinkSetupError(
            f"--flink_master {flink_master}: no Flink cluster answers at {url} ({reason}): "
            f"start the local one with launch/flink_local.sh start, or name a running "
            f"cluster's REST address") from None


def _given(pipeline_args: list[str]) -> argparse.Namespace:
    """The Flink-related flags the command line set itself: Beam's parser cannot tell a flag
    given with its default value from one left out."""
    parser = argparse.ArgumentParser(add_help=False)
    for flag in ("--flink_master", "--flink_version", "--flink_job_server_jar",
                 "--environment_type", "--environment_config", "--parallelism",
                 "--sdk_worker_parallelism"):
        parser.add_argument(flag)
    parser.add_argument("--job_server_jvm_properties", "--job_server_jvm_property",
                        action="append")
    given, _ = parser.parse_known_args(pipeline_args)
    return given


def with_defaults(pipeline_args: list[str]) -> list[str]:
    """``pipeline_args`` plus the project's choice for every Flink option left out; the
    arguments unchanged for any other runner, or for Beam's own ``[auto]``/``[local]``."""
    if not is_flink(PipelineOptions(pipeline_args)):
        return pipeline_args
    given = _given(pipeline_args)
    master = given.flink_master or "[auto]"
    if master in MAGIC_MASTERS:
        return pipeline_args
    added = []
    flink_version = given.flink_version or FLINK_VERSION
    if not given.flink_version:
        added.append(f"--flink_version={flink_version}")
    overview = cluster_overview(master)
    cluster_version = str(overview.get("flink-version", ""))
    if not cluster_version.startswith(f"{flink_version}."):
        raise FlinkSetupError(
            f"--flink_master {master} runs Flink {cluster_version or '(unknown version)'}, "
            f"but the job server is for Flink {flink_version}: pass --flink_version with "
            f"the cluster's major.minor version (and that job server's jar)")
    # Also --flink_submit_uber_jar builds its jar on the job server's.
    if not given.flink_job_server_jar:
        jar = job_server_jar(flink_version)
        if not jar.is_file():
            raise FlinkSetupError(
                f"--runner FlinkRunner needs Beam's Flink job server jar "
                f"{job_server_artifact(flink_version)}, and {jar} does not exist: fetch it "
                f"with launch/flink_local.sh fetch-jar (which says why when Maven cannot), "
                f"or pass --flink_job_server_jar PATH")
        added.append(f"--flink_job_server_jar={jar}")
    if not given.environment_type:
        added += ["--environment_type=EXTERNAL", f"--environment_config={WORKER_POOL}"]
    task_managers = int(overview.get("taskmanagers", 0))
    slots = int(overview.get("slots-total", 0))
    if not slots:
        raise FlinkSetupError(f"--flink_master {master}: the cluster has no TaskManager slot "
                              f"to run on: start its TaskManagers first")
    if not given.parallelism:
        added.append(f"--parallelism={slots}")
    if not given.sdk_worker_parallelism:
        # One Python worker per slot: a TaskManager with one worker scores on one core.
        added.append(f"--sdk_worker_parallelism={max(1, slots // max(1, task_managers))}")
    if not given.job_server_jvm_properties:
        added += [f"--job_server_jvm_property={flag}" for flag in JAVA_17_OPENS]
    return [*pipeline_args, *added]
