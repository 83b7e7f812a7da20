"""Interrupted runs: what a run killed part-way leaves behind, and what a re-run makes of it.

Beam's sinks write shards under temporary names and rename them when the job finishes;
``summary.json`` is written after that, last. So a killed run leaves no output file that
looks complete, and ``--skip-scored`` trusts an earlier output only when its summary says
the run finished: the nightly re-run of a killed night scores the whole night again.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from scoring_helpers import concrete, copy_files, score

REPO = Path(__file__).resolve().parents[1]
# Logged by the reading step every 500 inputs: with 1,008 inputs, scoring is under way and
# about half of it is still to come when this appears.
MID_RUN = "read 500 inputs so far"
KILL_DEADLINE_S = 180.0  # a safety bound on the killed run, which is killed in seconds


@pytest.mark.shared("1,008 real photos to score (../shared/data/concrete/Positive/0*.jpg), so "
                    "that the run is still scoring when it is killed")
def test_killed_run_leaves_no_output_that_a_rerun_would_trust(
        tmp_path: Path, shared_dir: Path, tiny_model_dir: Path,
        caplog: pytest.LogCaptureFixture):
    pattern = shared_dir / "data" / "concrete" / "Positive" / "0*.jpg"
    count = len(list(pattern.parent.glob(pattern.name)))
    killed = tmp_path / "killed"
    # Small batches: more model calls, so the run is still scoring when it is killed.
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.score", "--input", str(pattern),
         "--model", str(tiny_model_dir), "--output", str(killed), "--batch-size", "4"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    watchdog = threading.Timer(KILL_DEADLINE_S, process.kill)
    watchdog.start()
    log = []
    try:
        for line in process.stderr:
            log.append(line)
            if MID_RUN in line:
                os.kill(process.pid, signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL, "".join(log[-30:])

    # Whatever the killed run left is inside Beam's temporary folders, nothing beside them.
    left = sorted(path.name for path in killed.iterdir()) if killed.exists() else []
    assert all(name.startswith("beam-temp-") for name in left), left

    rerun = tmp_path / "rerun"
    with caplog.at_level(logging.WARNING):
        summary = score("--input", pattern, "--model", tiny_model_dir, "--output", rerun,
                        "--skip-scored", killed)
    assert f"--skip-scored {killed}: {killed}/summary.json is missing" in caplog.text
    assert summary["reused"] == 0
    assert summary["seen"] == summary["scored"] == count and summary["failed"] == 0
    temporary = [path for path in killed.rglob("*") if path.is_file()]
    print(f"\nkilled mid-run, leaving {len(temporary)} temporary files; the re-run scored "
          f"all {count} inputs again")


def test_skip_scored_reuses_an_earlier_output_only_when_its_run_finished(
        tmp_path: Path, real_data: Path, tiny_model_dir: Path,
        caplog: pytest.LogCaptureFixture):
    night = tmp_path / "night"
    copy_files(concrete(real_data, "Negative", 10), night)
    common = ("--input", night, "--model", tiny_model_dir)
    finished = tmp_path / "finished"
    score(*common, "--output", finished)

    # Killed after the sinks renamed their shards, before the summary: complete-looking
    # predictions and errors, no summary.json.
    unfinished = tmp_path / "killed-before-summary"
    shutil.copytree(finished, unfinished)
    for name in ("summary.json", "report.html"):
        (unfinished / name).unlink()
    # Finished, but its accounting failed (the run raised after writing its summary).
    mismatched = tmp_path / "accounting-failed"
    shutil.copytree(finished, mismatched)
    summary_file = mismatched / "summary.json"
    summary_file.write_text(json.dumps({**json.loads(summary_file.read_text()),
                                        "accounting_ok": False}))

    for previous, reason in (
            (unfinished, "summary.json is missing"),
            (mismatched, "summary.json does not record a run whose accounting added up")):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            summary = score(*common, "--output", tmp_path / f"after-{previous.name}",
                            "--skip-scored", previous)
        assert f"--skip-scored {previous}: {previous}/{reason}" in caplog.text
        assert (summary["reused"], summary["scored"]) == (0, 10), previous.name

    summary = score(*common, "--output", tmp_path / "after-finished", "--skip-scored",
                    finished)
    assert (summary["reused"], summary["scored"]) == (10, 10)
