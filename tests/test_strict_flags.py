"""Strict command lines: an argument neither the command nor Beam understands stops the run
before any work, with exit status 2 and the nearest valid flag; Beam's own options reach
the pipeline exactly as given."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import (DirectOptions, GoogleCloudOptions,
                                                  PipelineOptions, StandardOptions)

from crackscan import cli
from pipeline.score import build_parser
from scoring_helpers import concrete, copy_files, score

REPO = Path(__file__).resolve().parents[1]
BEAM_OPTIONS = ["--runner", "DirectRunner", "--direct_running_mode=multi_threading",
                "--direct_num_workers", "2", "--temp_location", "/tmp/beam-temp",
                "--experiments", "a", "--experiments=b", "--save_main_session"]


@pytest.mark.parametrize("extra, message", [
    (["--skip_scored", "LAST_NIGHT"], "did you mean --skip-scored?"),
    (["--bigquery_table", "my-project:inspection.cracks"], "did you mean --bigquery-table?"),
    (["--outptu", "elsewhere"], "did you mean --output?"),
    (["stray"], "unrecognized arguments: stray"),
    (["--input=x", "--runner", "DirectRunner", "--frobnicate"],
     "--frobnicate is not an option of this command"),
])
def test_an_argument_nobody_understands_exits_2_before_any_work(
        tmp_path: Path, extra: list[str], message: str):
    """The model and the input do not exist: a run that got as far as its checks would
    exit 1 naming them, so exit status 2 shows the arguments were refused first."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.score", "--input", str(tmp_path / "missing"),
         "--model", str(tmp_path / "no-model"), "--output", str(out), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "no-model" not in result.stderr
    assert not out.exists()


def test_beam_options_pass_through_exactly_as_given():
    ours = ["--input", "in/", "--model", "m", "--output", "o", "--write-tiles"]
    args, beam_args = cli.parse_with_beam_options(build_parser(), ours + BEAM_OPTIONS)
    assert beam_args == BEAM_OPTIONS
    assert args.input == ["in/"] and args.write_tiles
    options = PipelineOptions(beam_args)
    assert options.view_as(DirectOptions).direct_num_workers == 2
    assert options.view_as(StandardOptions).runner == "DirectRunner"
    assert options.view_as(GoogleCloudOptions).temp_location == "/tmp/beam-temp"


def test_a_malformed_beam_option_exits_2_with_beams_reason(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exited:
        cli.parse_with_beam_options(build_parser(), [
            "--input", "in/", "--model", "m", "--output", "o", "--direct_num_workers", "two"])
    assert exited.value.code == 2
    assert "argument --direct_num_workers: invalid int value: 'two'" in capsys.readouterr().err


def test_a_run_with_beam_options_scores_with_them(tmp_path: Path, real_data: Path,
                                                  tiny_model_dir: Path):
    photos = copy_files(concrete(real_data, "Positive", 3), tmp_path / "in")
    summary = score("--input", tmp_path / "in", "--model", tiny_model_dir, "--output",
                    tmp_path / "out", "--runner", "DirectRunner",
                    "--direct_running_mode=multi_threading", "--direct_num_workers", "2")
    assert summary["scored"] == len(photos) and summary["accounting_ok"] is True


def test_training_parsers_name_the_nearest_flag(capsys: pytest.CaptureFixture):
    from training import train

    with pytest.raises(SystemExit) as exited:
        cli.parse_args(train.parser(), ["--data", "d", "--output", "o", "--image_size", "96"])
    assert exited.value.code == 2
    assert "did you mean --image-size?" in capsys.readouterr().err
    args = cli.parse_args(train.parser(), ["--data", "d", "--output", "o", "--image-size",
                                           "96"])
    assert args.image_size == 96


def test_expected_failures_end_in_one_line_and_status_1(tmp_path: Path):
    script = ("from crackscan import cli\n"
              "with cli.one_line_errors('training.train', FileNotFoundError):\n"
              "    open('/nonexistent/manifest.json')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr == ("training.train: error: [Errno 2] No such file or directory: "
                             "'/nonexistent/manifest.json'\n")
    unexpected = script.replace("FileNotFoundError", "KeyError")
    result = subprocess.run([sys.executable, "-c", unexpected], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1 and "Traceback" in result.stderr
