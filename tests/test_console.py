"""At the default verbosity a command prints its own progress, warnings and results, and no
line of Beam's, TensorFlow's or LiteRT's internals; ``--verbose`` shows them."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from crackscan import verbosity

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(sys.executable).parent
# What the libraries print about themselves: Beam's worker lines as the job service relays
# them, TensorFlow's and absl's C++ start-up lines, LiteRT's delegate line.
INTERNALS = re.compile(r"apache_beam|Worker: severity|semi_persistent_directory|"
                       r"unparseable args|Resource module|tensorflow|absl::|"
                       r"cpu_feature_guard|oneDNN|XNNPACK|^[IWE]\d{4} ", re.MULTILINE)
# As a user's shell has it: this process's own imports set TensorFlow's log level.
ENVIRONMENT = {key: value for key, value in os.environ.items()
               if key not in (*verbosity.TENSORFLOW_QUIET, verbosity.VERBOSE_ENV)}


def run(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env=ENVIRONMENT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def internals(result: subprocess.CompletedProcess) -> list[str]:
    output = result.stdout + result.stderr
    return [line for line in output.splitlines() if INTERNALS.search(line)]


def test_the_demo_prints_its_own_lines_only(tmp_path: Path):
    result = run([str(SCRIPTS / "crackscan-demo"), "--output", str(tmp_path / "demo")])
    assert "14 of 14 verdicts match" in result.stdout
    assert internals(result) == []
    assert result.stderr == ""


def test_a_plain_score_shows_our_warning_and_no_library_line(tmp_path: Path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    result = run([str(SCRIPTS / "crackscan-score"), "--input", "pipeline/sample_survey/photos",
                  "--output", str(tmp_path / "out"), "--skip-scored", str(unfinished)])
    assert internals(result) == []
    assert (f"WARNING --skip-scored {unfinished}: {unfinished}/summary.json is missing"
            in result.stderr)
    assert "INFO 14 files match 1 input pattern(s)" in result.stderr


def test_help_is_quiet_and_verbose_shows_tensorflow():
    quiet = run([str(SCRIPTS / "crackscan-export-tflite"), "--help"])
    assert quiet.stdout.startswith("usage: crackscan-export-tflite")
    assert quiet.stderr == ""
    loud = run([str(SCRIPTS / "crackscan-export-tflite"), "--verbose", "--help"])
    assert internals(loud) != []


def test_a_workers_line_is_judged_by_the_code_that_logged_it():
    """Beam's job service relays a worker's line as its own; ours keeps its message."""
    def relayed(location: str, message: str, level: int = logging.WARNING) -> logging.LogRecord:
        entry = (f'severity: WARN timestamp {{   seconds: 1 }} message: "{message}" '
                 f'log_location: "{location}:56" thread: "Thread-1" ')
        return logging.LogRecord("apache_beam.runners.portability.local_job_service", level,
                                 "/site-packages/apache_beam/local_job_service.py", 367,
                                 "Worker: %s", (entry,), None)

    own = relayed(str(REPO / "pipeline" / "tiling.py"), "a.jpg: photo metadata left out: \\'x\\'")
    assert verbosity.OwnLinesOnly().filter(own)
    assert own.getMessage() == "a.jpg: photo metadata left out: 'x'"
    beams = relayed("/site-packages/apache_beam/runners/worker/sdk_worker_main.py",
                    "No semi_persistent_directory found")
    assert not verbosity.OwnLinesOnly().filter(beams)
    assert verbosity.OwnLinesOnly().filter(relayed("/site-packages/apache_beam/x.py", "boom",
                                                   logging.ERROR))
