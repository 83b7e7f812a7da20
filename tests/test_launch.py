"""The launch scripts parse, and refuse to start, naming what is missing, before any job runs.

Every run here but the last stops at the scripts' own checks; `PYTHON` points at a command
that fails loudly, so a script that got past its checks would fail these tests instead of
scoring. The last runs the nightly script for real, on the local runner.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scoring_helpers import concrete, score

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
SCRIPTS = sorted(LAUNCH.glob("*.sh"))
BASH = shutil.which("bash")
NOT_A_PYTHON = "/nonexistent/python-must-not-be-reached"

# Script -> the settings it must name when started with nothing at all.
REQUIRED = {
    "local.sh": ["INPUT", "MODEL_DIR", "OUT"],
    "dataflow.sh": ["INPUT", "MODEL_DIR", "OUT", "PROJECT", "REGION", "BUCKET"],
    "flink.sh": ["INPUT", "MODEL_DIR", "OUT", "FLINK_MASTER"],
    "flink_local.sh": ["COMMAND"],
    "nightly.sh": ["SURVEY_ROOT", "OUTPUT_ROOT", "MODEL_DIR"],
}

pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")


def run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, str(LAUNCH / script), *args], capture_output=True, text=True,
                          env={"PYTHON": NOT_A_PYTHON, **env}, timeout=30, check=False)


def test_every_runnable_script_is_covered():
    runnable = {path.name for path in SCRIPTS if path.name != "common.sh"}
    assert runnable == set(REQUIRED)
    for name in runnable:
        assert os.access(LAUNCH / name, os.X_OK), f"{name} is not executable (cron calls it)"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_scripts_parse(script: Path):
    result = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_pass_shellcheck():
    result = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", sorted(REQUIRED))
def test_empty_environment_is_refused_naming_every_missing_setting(script: str):
    result = subprocess.run([BASH, str(LAUNCH / script)], capture_output=True, text=True,
                            env={}, timeout=30, check=False)

    assert result.returncode != 0
    for name in REQUIRED[script]:
        assert f"{name}:" in result.stderr, result.stderr
    assert "unbound variable" not in result.stderr


def test_flink_portable_mode_asks_for_the_job_endpoint_instead():
    result = run("flink.sh", "in/", "model/", "out/", FLINK_MODE="portable")

    assert result.returncode != 0
    assert "JOB_ENDPOINT" in result.stderr and "FLINK_MASTER" not in result.stderr


def test_dataflow_refuses_local_paths_its_workers_cannot_read():
    result = run("dataflow.sh", "/home/me/photos/", "gs://m/v1", "gs://o/x",
                 PROJECT="p", REGION="europe-west1", BUCKET="b")

    assert result.returncode != 0
    assert "INPUT must be a gs:// path" in result.stderr


def test_nightly_refuses_a_malformed_night(tmp_path: Path):
    result = run("nightly.sh", "2024-6-1", SURVEY_ROOT=str(tmp_path), OUTPUT_ROOT=str(tmp_path),
                 MODEL_DIR=str(tmp_path), LOG_DIR=str(tmp_path / "logs"))

    assert result.returncode != 0
    assert "NIGHT must be YYYY-MM-DD" in result.stderr


def test_nightly_rerun_keeps_the_last_finished_output_over_a_killed_one(
        tmp_path: Path, real_data: Path, tiny_model_dir: Path):
    """Night scored once; a re-run was killed part-way, leaving shards but no summary.json.
    The next re-run must reuse the finished output, not replace it with the killed one."""
    night = tmp_path / "surveys" / "2026-11-24"
    night.mkdir(parents=True)
    for path in concrete(real_data, "Positive", 3):
        shutil.copyfile(path, night / path.name)
    outputs = tmp_path / "scores"
    finished = outputs / "_previous" / "dt=2026-11-24"
    score("--input", night, "--model", tiny_model_dir, "--output", finished)
    killed = outputs / "dt=2026-11-24"
    killed.mkdir()
    (killed / "predictions-00000-of-00001.csv").write_text("uri,label\nhalf a row")

    result = subprocess.run(
        [BASH, str(LAUNCH / "nightly.sh"), "2026-11-24"], capture_output=True, text=True,
        timeout=600, check=False,
        env={**os.environ, "SURVEY_ROOT": str(tmp_path / "surveys"),
             "OUTPUT_ROOT": str(outputs), "MODEL_DIR": str(tiny_model_dir),
             "PYTHON": sys.executable, "NUM_WORKERS": "1", "LOG_DIR": str(tmp_path / "logs")})

    log = "".join(path.read_text() for path in (tmp_path / "logs").glob("*.log"))
    assert result.returncode == 0, log[-3000:]
    assert "holds an unfinished run (no summary.json)" in log
    summary = json.loads((killed / "summary.json").read_text())
    assert (summary["seen"], summary["scored"], summary["reused"]) == (3, 3, 3)
    assert json.loads((finished / "summary.json").read_text())["scored"] == 3
