"""``pipeline.worker_pool``: the Python side of a Flink run, without Flink.

On Flink the TaskManagers ask this pool for SDK workers (the EXTERNAL environment). Beam's
portable job service (``--runner PortableRunner --job_endpoint embed``) asks the same pool
in the same way, so the real scoring job runs here with its Python code in the pool's
worker processes, and its rows can be held against the DirectRunner's.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc, endpoints_pb2

from proc_helpers import HAS_PROC, alive, children, listening_sockets, on_loopback
from scoring_helpers import concrete, copy_files, read_jsonl, read_predictions, score

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """A worker pool on a free loopback port: the process, its address and its log."""
    address, log = f"127.0.0.1:{free_port()}", tmp_path / "pool.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.worker_pool", "--address", address],
            stdout=output, stderr=subprocess.STDOUT, cwd=REPO)
    host, port = address.split(":")
    deadline = time.monotonic() + 60
    while socket.socket().connect_ex((host, int(port))) != 0:
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    yield process, address, log
    if process.poll() is None:
        process.kill()
        process.wait()


def test_the_pools_workers_score_the_direct_runners_rows(
        pool: tuple[subprocess.Popen, str, Path], tmp_path: Path, real_data: Path,
        monkeypatch: pytest.MonkeyPatch):
    _, address, _ = pool
    inputs = tmp_path / "in"
    copy_files(concrete(real_data, "Positive", 6) + concrete(real_data, "Negative", 6), inputs)
    with zipfile.ZipFile(inputs / "flight.zip", "w") as archive:
        for path in concrete(real_data, "Positive", 10)[6:]:
            archive.write(path, f"flight/{path.name}")
        archive.writestr("flight/notes.jpg", b"battery swapped\n")
    (inputs / "empty.jpg").write_bytes(b"")
    common = ["--input", str(inputs), "--batch-size", "8"]
    score(*common, "--output", tmp_path / "direct")
    # The pool's workers import the pipeline by module name, like launch/common.sh sets up.
    monkeypatch.setenv("PYTHONPATH", str(REPO))

    pooled = subprocess.Popen(
        [sys.executable, "-m", "pipeline.score", *common, "--output", str(tmp_path / "pool"),
         "--runner", "PortableRunner", "--job_endpoint", "embed",
         "--environment_type", "EXTERNAL", "--environment_config", address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    _, log = pooled.communicate(timeout=600)

    assert pooled.returncode == 0, log[-3000:]
    # The run's closing lines name the process that scored: a worker, not the launcher.
    workers = {int(pid) for pid in re.findall(r"worker \S+:(\d+) scored \d+ tiles", log)}
    assert workers and pooled.pid not in workers

    def without_time(out: Path) -> dict[str, dict]:
        return {uri: {k: v for k, v in row.items() if k != "scored_at"}
                for uri, row in read_predictions(out).items()}

    assert without_time(tmp_path / "pool") == without_time(tmp_path / "direct")
    assert sorted(read_jsonl(tmp_path / "pool", "errors"), key=lambda r: r["uri"]) == sorted(
        read_jsonl(tmp_path / "direct", "errors"), key=lambda r: r["uri"])
    summary = json.loads((tmp_path / "pool" / "summary.json").read_text())
    assert summary["accounting_ok"] is True and summary["failed"] == 2



@pytest.mark.skipif(not HAS_PROC, reason="needs Linux's /proc")
def test_a_worker_runs_on_the_pools_own_python_and_ends_with_the_pool(
        pool: tuple[subprocess.Popen, str, Path]):
    process, address, _ = pool
    # A worker asked to serve a control endpoint where nothing listens waits for it, alive.
    with grpc.insecure_channel(address) as channel:
        reply = beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(channel).StartWorker(
            beam_fn_api_pb2.StartWorkerRequest(
                worker_id="worker-1", control_endpoint=endpoints_pb2.ApiServiceDescriptor(
                    url=f"127.0.0.1:{free_port()}")), timeout=60)
    assert reply.error == ""
    deadline = time.monotonic() + 30
    while not children(process.pid):
        assert time.monotonic() < deadline, "the pool started no worker process"
        time.sleep(0.2)
    (worker,) = children(process.pid)
    assert Path(f"/proc/{worker}/exe").resolve() == Path(sys.executable).resolve()

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)

    assert process.returncode == 0
    assert not alive(worker)


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux's /proc")
def test_the_pool_listens_on_the_loopback_address_it_is_given_only(
        pool: tuple[subprocess.Popen, str, Path]):
    process, address, _ = pool

    assert [(on_loopback(host), port) for host, port in listening_sockets(process.pid)] == [
        (True, int(address.rsplit(":", 1)[1]))]
