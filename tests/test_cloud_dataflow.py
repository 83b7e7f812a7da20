"""``--dry-run`` for Dataflow: the launch is checked and described, and nothing is submitted.

Inputs, model and output live in the local GCS emulator, so the dry run reads the model card
and lists the inputs exactly as it would in a real project, with no traffic leaving
127.0.0.1.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from cloud_fixtures import gcs_bucket, offline_google_auth, upload_tree  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def score(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipeline.score", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def test_dry_run_checks_dataflow_options_and_prints_the_job_without_submitting(
        tmp_path: Path, concrete_dir: Path, trained_model_dir: Path, gcs_bucket: str):
    survey = tmp_path / "survey"
    survey.mkdir()
    for path in sorted((concrete_dir / "Positive").glob("*.jpg"))[:3]:
        (survey / path.name).write_bytes(path.read_bytes())
    upload_tree(survey, f"{gcs_bucket}/dry/survey")
    upload_tree(trained_model_dir, f"{gcs_bucket}/dry/model")
    job = ["--input", f"{gcs_bucket}/dry/survey/", "--model", f"{gcs_bucket}/dry/model",
           "--output", f"{gcs_bucket}/dry/out", "--dry-run", "--runner=DataflowRunner",
           "--job_name=crackscan-dry-run"]
    launch = ["--project=inspection-prod", "--region=europe-west1",
              f"--temp_location={gcs_bucket}/tmp", f"--staging_location={gcs_bucket}/staging",
              f"--setup_file={REPO / 'setup.py'}", "--max_num_workers=10"]

    result = score(*job, *launch)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    card = json.loads((trained_model_dir / "model_card.json").read_text())
    assert plan["submitted"] is False
    assert (plan["runner"], plan["project"], plan["region"], plan["job_name"]) == (
        "DataflowRunner", "inspection-prod", "europe-west1", "crackscan-dry-run")
    assert plan["inputs"] == [f"{gcs_bucket}/dry/survey/"]
    assert plan["model_version"] == card["model_sha256"][:12]
    assert plan["output"] == f"{gcs_bucket}/dry/out"
    assert plan["pipeline_options"]["max_num_workers"] == 10
    assert plan["pipeline_options"]["setup_file"] == str(REPO / "setup.py")
    assert FileSystems.match([f"{gcs_bucket}/dry/out**"])[0].metadata_list == []
    assert FileSystems.match([f"{gcs_bucket}/staging/**"])[0].metadata_list == []

    # Each missing or wrong option is named, all in one go, before anything is read.
    result = score(*job, f"--setup_file={tmp_path / 'nowhere.py'}",
                   "--staging_location=/tmp/staging")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for expected in ("missing required option --project", "missing required option --region",
                     "missing required option --temp_location",
                     "--staging_location must be a gs:// path",
                     f"--setup_file {tmp_path / 'nowhere.py'} does not exist"):
        assert expected in result.stderr, (expected, result.stderr)

    local = score("--input", str(survey), "--model", str(trained_model_dir),
                  "--output", str(tmp_path / "out"), "--dry-run", "--runner=DataflowRunner",
                  *launch)
    assert local.returncode == 1
    for flag in ("--input", "--model", "--output"):
        assert f"{flag} " in local.stderr and "is not a gs:// path" in local.stderr
