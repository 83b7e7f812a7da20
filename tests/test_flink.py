"""A real Apache Flink cluster on this machine: ``launch/flink_local.sh`` starts a JobManager,
two TaskManagers and the Beam worker pool, and ``crackscan-score --runner FlinkRunner
--flink_master localhost:8081`` submits to it with nothing else on its command line.

The cluster is started once for the module and stopped at its end. Flink and the Beam job
server jar are downloaded once into ``~/.cache/crackscan`` (this user's cache, not the
session's temporary one: they are 230 MB and 150 MB), so reruns start in seconds. Tests
skip, saying why, where Java is missing; the scoring runs skip, with the reason
``flink_local.sh fetch-jar`` gives, where the job server jar cannot be fetched (a Maven
registry that does not serve it).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from pipeline.flink import job_server_artifact
from proc_helpers import HAS_PROC, alive, listening_sockets, on_loopback
from scoring_helpers import (concrete, copy_files, encoded, field_photos, png_declaring,
                             read_jsonl, read_predictions, score)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "launch" / "flink_local.sh"
CACHE = Path.home() / ".cache" / "crackscan"
MASTER = "localhost:8081"
PORTS = {8081: "REST", 6123: "JobManager RPC", 50000: "worker pool"}
ROLES = ["JobManager", "TaskManager", "TaskManager", "worker pool"]
# Written with six decimals; both runs use one LiteRT file at one batch size.
TOLERANCE = 1e-6
BATCH = ("--batch-size", "8")

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None and not os.environ.get("JAVA_HOME"),
    reason="Java is not installed: Flink needs Java 11 or 17 (openjdk-17-jre-headless)")


def flink_local(*args: str, cache: Path = CACHE, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
        check=False, env={**os.environ, "CRACKSCAN_CACHE_DIR": str(cache),
                          "PYTHON": sys.executable, **env})


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def rest(path: str) -> dict:
    with urllib.request.urlopen(f"http://{MASTER}{path}", timeout=10) as reply:
        return json.load(reply)


def started(status: str) -> dict[str, list[int]]:
    """``{role: [pid, ...]}`` from the lines ``ROLE: pid N (running)`` of status."""
    pids: dict[str, list[int]] = {}
    for role, pid in re.findall(r"^([A-Za-z ]+): pid (\d+) \(running\)$", status, re.M):
        pids.setdefault(role, []).append(int(pid))
    return pids


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, list[int]]]:
    """The local cluster, started once for the module: ``{role: [pid, ...]}``."""
    busy = [f"{port} ({role})" for port, role in PORTS.items() if listening(port)]
    if busy:
        pytest.skip(f"ports {', '.join(busy)} are in use: another Flink cluster runs here")
    result = flink_local("start")
    assert result.returncode == 0, result.stderr
    try:
        yield started(result.stdout)
    finally:
        if flink_local("status").returncode == 0:
            flink_local("stop")


@pytest.fixture(scope="module")
def fetched(cluster: dict[str, list[int]]) -> subprocess.CompletedProcess:
    """``flink_local.sh fetch-jar``, once: Maven takes seconds even to say no."""
    return flink_local("fetch-jar")


@pytest.fixture(scope="module")
def job_server_jar(fetched: subprocess.CompletedProcess) -> Path:
    """The job server jar in the cache, or a skip with flink_local.sh's one-line reason."""
    if fetched.returncode != 0:
        pytest.skip(fetched.stderr.strip().splitlines()[-1])
    return Path(fetched.stdout.strip())


# --------------------------------------------------------------------------- the cluster


def test_the_cluster_runs_two_taskmanagers_of_two_slots_with_a_restart_strategy(
        cluster: dict[str, list[int]]):
    overview = rest("/overview")
    assert (overview["taskmanagers"], overview["slots-total"]) == (2, 4)
    assert overview["flink-version"] == "1.20.5"
    config = {entry["key"]: entry["value"] for entry in rest("/jobmanager/config")}
    assert config["restart-strategy.type"] == "fixed-delay"
    assert int(config["restart-strategy.fixed-delay.attempts"]) >= 1


def test_status_names_the_master_the_dashboard_and_every_process_by_pid(
        cluster: dict[str, list[int]]):
    result = flink_local("status")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"Flink master: {MASTER}", f"dashboard: http://{MASTER}"]
    assert [line.split(":")[0] for line in lines[3:]] == ROLES
    assert started(result.stdout) == cluster


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux's /proc")
def test_every_process_of_the_cluster_listens_on_loopback_only(
        cluster: dict[str, list[int]]):
    sockets = {pid: listening_sockets(pid) for pids in cluster.values() for pid in pids}

    assert all(sockets.values()), sockets
    exposed = {pid: found for pid, found in sockets.items()
               if not all(on_loopback(address) for address, _ in found)}
    assert not exposed
    ports = {port for found in sockets.values() for _, port in found}
    assert set(PORTS) <= ports


def test_a_second_start_and_a_busy_port_are_refused_in_one_line(
        cluster: dict[str, list[int]], tmp_path: Path):
    again = flink_local("start")
    # Another cache has no cluster of its own, but Flink's port is taken by this one.
    elsewhere = flink_local("start", cache=tmp_path)

    assert again.returncode == 1
    assert again.stderr.strip() == (
        "flink_local.sh: a local cluster is already started (launch/flink_local.sh status); "
        "stop it first with launch/flink_local.sh stop")
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.strip() == (
        "flink_local.sh: port 8081 is in use by another process: stop it, or choose another "
        "port with FLINK_REST_PORT=PORT (REST API)")
    assert not list(tmp_path.iterdir()), "nothing is downloaded before the checks"


def test_fetch_jar_fetches_the_job_server_or_says_in_one_line_why_not(
        fetched: subprocess.CompletedProcess):
    result = fetched

    if result.returncode == 0:
        assert Path(result.stdout.strip()).is_file()
        return
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"flink_local.sh: the Beam job server jar "
                           f"{job_server_artifact('1.20')} cannot be fetched (")
    assert "FLINK_JOB_SERVER_JAR" in last and "--flink_job_server_jar" in last
    assert "Exception" not in result.stderr and "\tat " not in result.stderr


def score_two_photos_on_flink(tmp_path: Path, real_data: Path, *flags: str,
                              env: dict[str, str] | None = None
                              ) -> subprocess.CompletedProcess:
    """Two lab photos scored with the README's Flink command plus ``flags``, in a process of
    its own, as a user runs it; its exit status and output."""
    inputs = copy_files(concrete(real_data, "Positive", 2), tmp_path / "in")[0].parent
    return subprocess.run(
        [sys.executable, "-m", "pipeline.score", "--input", str(inputs),
         "--output", str(tmp_path / "out"), "--runner", "FlinkRunner",
         "--flink_master", MASTER, *flags],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO, env=env)


def test_score_without_the_job_server_jar_names_it_and_the_fix(
        cluster: dict[str, list[int]], tmp_path: Path, real_data: Path):
    result = score_two_photos_on_flink(
        tmp_path, real_data, env={**os.environ,
                                  "CRACKSCAN_CACHE_DIR": str(tmp_path / "empty-cache")})

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"pipeline.score: error: --runner FlinkRunner needs Beam's Flink job server jar "
        f"{job_server_artifact('1.20')}, and {tmp_path}/empty-cache/jars/"
        f"beam-runners-flink-1.20-job-server-{job_server_artifact('1.20').rsplit(':', 1)[1]}"
        f".jar does not exist: fetch it with launch/flink_local.sh fetch-jar (which says why "
        f"when Maven cannot), or pass --flink_job_server_jar PATH")
    assert not (tmp_path / "out").exists()


def test_score_refuses_a_job_server_for_another_flink_version_than_the_clusters(
        cluster: dict[str, list[int]], tmp_path: Path, real_data: Path):
    result = score_two_photos_on_flink(tmp_path, real_data, "--flink_version", "1.19",
                                       "--dry-run")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"pipeline.score: error: --flink_master {MASTER} runs Flink 1.20.5, but the job "
        f"server is for Flink 1.19: pass --flink_version with the cluster's major.minor "
        f"version (and that job server's jar)")


def test_the_dry_run_shows_the_flink_plan_taken_from_the_running_cluster(
        cluster: dict[str, list[int]], tmp_path: Path, real_data: Path, capsys):
    inputs = copy_files(concrete(real_data, "Positive", 2), tmp_path / "in")[0].parent
    # An operator's own copy of the jar, named explicitly: the dry run never opens it.
    jar = tmp_path / "operators-job-server.jar"
    jar.write_bytes(b"")
    plan = score("--input", inputs, "--output", tmp_path / "out", "--dry-run",
                 "--runner", "FlinkRunner", "--flink_master", MASTER,
                 "--flink_job_server_jar", jar)

    options = plan["pipeline_options"]
    assert plan["runner"] == "FlinkRunner" and plan["submitted"] is False
    assert options["flink_master"] == MASTER and options["flink_version"] == "1.20"
    assert options["flink_job_server_jar"] == str(jar)
    assert (options["environment_type"], options["environment_config"]) == (
        "EXTERNAL", "127.0.0.1:50000")
    assert options["parallelism"] == 4 and int(options["sdk_worker_parallelism"]) == 2
    assert "--add-opens=java.base/java.util=ALL-UNNAMED" in options[
        "job_server_jvm_properties"]
    assert plan["inference"]["litert_threads"] == 1
    assert json.loads(capsys.readouterr().out) == plan


# --------------------------------------------------------------------------- scoring on Flink


def survey(root: Path, real_data: Path, copies: int = 1) -> Path:
    """Loose real photos, a zip, a tar.gz, a large photo cut into tiles and hostile files;
    ``copies`` repeats the loose photos to make a job that runs for a while."""
    photos = concrete(real_data, "Positive", 20) + concrete(real_data, "Negative", 20)
    for copy in range(copies):
        copy_files(photos, root / f"loose{copy}")
    with Image.open(field_photos(real_data, "uavcrack", 1)[0]) as image:
        (root / "large.jpg").write_bytes(encoded(
            image.convert("RGB").resize((1200, 900), Image.Resampling.BICUBIC), "JPEG"))
    members = [(f"flight/{path.name}", path.read_bytes()) for path in photos[:12]]
    members += [("flight/notes.jpg", b"battery swapped\n"), ("../escape.jpg", members[0][1])]
    with zipfile.ZipFile(root / "flight.zip", "w", zipfile.ZIP_STORED) as packed:
        for name, data in members:
            packed.writestr(name, data)
    with tarfile.open(root / "flight.tar.gz", "w:gz") as tarred:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tarred.addfile(info, io.BytesIO(data))
    jpeg = photos[0].read_bytes()
    (root / "hostile").mkdir()
    (root / "hostile" / "empty.jpg").write_bytes(b"")
    (root / "hostile" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "hostile" / "bomb.png").write_bytes(png_declaring(100_000, 100_000))
    return root


def submit(inputs: Path, out: Path, *flags: str) -> subprocess.Popen:
    """The README's Flink command, as a user runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.score", "--input", str(inputs), "--output", str(out),
         *BATCH, "--runner", "FlinkRunner", "--flink_master", MASTER, *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "CRACKSCAN_CACHE_DIR": str(CACHE),
             "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                         os.environ.get("PYTHONPATH")]))})


def outputs(out: Path) -> tuple[dict[str, dict], list[dict], dict]:
    rows = {uri: {key: value for key, value in row.items() if key != "scored_at"}
            for uri, row in read_predictions(out).items()}
    errors = sorted(read_jsonl(out, "errors"), key=lambda row: row["uri"])
    return rows, errors, json.loads((out / "summary.json").read_text())


def assert_same_rows(flink: Path, direct: Path) -> dict:
    """Flink's rows are the DirectRunner's, probabilities within TOLERANCE; Flink's summary."""
    (rows, errors, summary), (expected, expected_errors, direct_summary) = (
        outputs(flink), outputs(direct))
    assert set(rows) == set(expected)
    for uri, row in rows.items():
        want = expected[uri]
        assert abs(float(row["crack_probability"]) - float(want["crack_probability"])
                   ) <= TOLERANCE, uri
        assert {k: v for k, v in row.items() if k != "crack_probability"} == {
            k: v for k, v in want.items() if k != "crack_probability"}, uri
    assert errors == expected_errors
    assert summary["accounting"]["problems"] == [] and summary["accounting_ok"] is True
    for key in ("seen", "scored", "failed", "positive", "tiles"):
        assert summary[key] == direct_summary[key], key
    return summary


def worker_tiles(log: str) -> dict[str, int]:
    """Tiles per worker process, from the run's closing log lines."""
    return {worker: int(tiles)
            for worker, tiles in re.findall(r"worker (\S+) scored (\d+) tiles", log)}


def finished_jobs() -> dict[str, str]:
    return {job["jid"]: job["state"] for job in rest("/jobs/overview")["jobs"]}


def test_a_survey_scored_on_flink_gives_the_direct_runners_rows(
        job_server_jar: Path, tmp_path: Path, real_data: Path):
    inputs = survey(tmp_path / "survey", real_data)
    score("--input", inputs, "--output", tmp_path / "direct", *BATCH)
    before = finished_jobs()

    run = submit(inputs, tmp_path / "flink")
    _, log = run.communicate(timeout=600)

    assert run.returncode == 0, log[-3000:]
    new = {jid: state for jid, state in finished_jobs().items() if jid not in before}
    assert list(new.values()) == ["FINISHED"], "the job ran on the cluster, not in-process"
    summary = assert_same_rows(tmp_path / "flink", tmp_path / "direct")
    assert summary["failed"] >= 7  # two archive members each, three hostile files
    assert "accounted for" in (tmp_path / "flink" / "report.html").read_text()
    scored_by = worker_tiles(log)
    assert len([tiles for tiles in scored_by.values() if tiles]) >= 2, scored_by
    assert sum(scored_by.values()) == summary["tiles"]


def taskmanager_running_tasks(cluster: dict[str, list[int]]) -> int:
    """The pid of a TaskManager that holds a slot of the running job."""
    for manager in rest("/taskmanagers")["taskmanagers"]:
        if manager["freeSlots"] < manager["slotsNumber"]:
            port = int(re.search(r":(\d+)/", manager["path"]).group(1))
            for pid in cluster["TaskManager"]:
                if port in {found for _, found in listening_sockets(pid)}:
                    return pid
    raise AssertionError("no TaskManager runs a task of the job")


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux's /proc")
def test_a_taskmanager_killed_mid_run_costs_a_retry_not_a_row(
        cluster: dict[str, list[int]], job_server_jar: Path, tmp_path: Path,
        real_data: Path):
    inputs = survey(tmp_path / "survey", real_data, copies=10)
    score("--input", inputs, "--output", tmp_path / "direct", *BATCH)
    # Two slots, so that the TaskManager left after the kill can take the whole job over.
    run = submit(inputs, tmp_path / "flink", "--parallelism=2")
    deadline = time.monotonic() + 300
    while rest("/overview")["jobs-running"] == 0:
        assert run.poll() is None and time.monotonic() < deadline, "the job never ran"
        time.sleep(0.5)
    time.sleep(5)
    assert run.poll() is None, "the job ended before the kill: make it larger"
    os.kill(taskmanager_running_tasks(cluster), signal.SIGKILL)

    _, log = run.communicate(timeout=600)

    assert run.returncode == 0, log[-3000:]
    assert_same_rows(tmp_path / "flink", tmp_path / "direct")


def test_stop_ends_every_process_it_started_and_nothing_else(cluster: dict[str, list[int]]):
    pids = [pid for role in cluster.values() for pid in role]
    result = flink_local("stop")

    assert result.returncode == 0, result.stderr
    assert not [pid for pid in pids if alive(pid)]
    assert not any(listening(port) for port in PORTS)
    assert flink_local("status").stderr.strip() == (
        "flink_local.sh: no local Flink cluster is started: run launch/flink_local.sh start")


def test_java_missing_is_refused_in_one_line(tmp_path: Path):
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "dirname").symlink_to(shutil.which("dirname"))
    result = subprocess.run(
        [shutil.which("bash"), str(SCRIPT), "start"], capture_output=True, text=True,
        timeout=60, check=False,
        env={"PATH": str(tools), "HOME": str(tmp_path), "PYTHON": sys.executable})

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "flink_local.sh: Java is missing: Flink needs Java 11 or 17 (apt-get install "
        "openjdk-17-jre-headless, or set JAVA_HOME)")
