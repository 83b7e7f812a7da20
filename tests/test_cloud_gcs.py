"""``gs://`` end to end against a local GCS emulator: the data set builder and the scorer.

Each test runs the same inputs once from local disk and once from the emulator's bucket and
compares what came out, so a path joined with ``os.path`` or a local-only existence check
shows up as a difference (or a crash) rather than hiding behind a mock.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from apache_beam.io.filesystems import FileSystems

from cloud_fixtures import gcs_bucket, offline_google_auth, upload_tree  # noqa: F401
from pipeline.records import PREDICTION_FIELDS
from pipeline.score import SetupError, run
from scoring_helpers import IN_MEMORY
from training import build_dataset

PER_CLASS = 15


def subset(concrete_dir: Path, root: Path, count: int = PER_CLASS) -> Path:
    """The first ``count`` images of each class, copied to ``root/Positive`` and so on."""
    for label in ("Positive", "Negative"):
        (root / label).mkdir(parents=True)
        for path in sorted((concrete_dir / label).glob("*.jpg"))[:count]:
            shutil.copyfile(path, root / label / path.name)
    return root


def read_gcs(uri: str) -> bytes:
    with FileSystems.open(uri) as handle:
        return handle.read()


def gcs_files(pattern: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def test_dataset_builder_reads_a_gcs_source_like_a_local_one(
        tmp_path: Path, concrete_dir: Path, gcs_bucket: str):
    local_source = subset(concrete_dir, tmp_path / "concrete")
    gcs_source = f"{gcs_bucket}/datasets/concrete"
    upload_tree(local_source, gcs_source)

    local = build_dataset.build(str(local_source), str(tmp_path / "local"), shards=2)
    remote = build_dataset.build(gcs_source, str(tmp_path / "remote"), shards=2)

    assert remote["source"] == gcs_source
    assert remote["errors"] == [] and remote["duplicates"] == local["duplicates"] == []
    assert remote["source_fingerprint"] == local["source_fingerprint"]
    assert remote["counts"] == local["counts"]
    total = sum(remote["counts"][split]["total"] for split in build_dataset.SPLITS)
    assert total == 2 * PER_CLASS
    assert remote["shards"] == local["shards"]
    assert remote["image_sizes"] == local["image_sizes"]


def prediction_rows(texts: list[str]) -> list[dict[str, str]]:
    rows = []
    for text in texts:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        assert tuple(reader.fieldnames) == PREDICTION_FIELDS
        rows += list(reader)
    return rows


def comparable(rows: list[dict], root: str) -> dict[str, dict]:
    """Rows keyed by their uri relative to the run's input root, without ``scored_at``."""
    return {row["uri"].removeprefix(root): {k: v for k, v in row.items()
                                            if k not in ("uri", "scored_at")}
            for row in rows}


def test_score_reads_images_and_a_zip_from_gcs_and_writes_every_output_there(
        tmp_path: Path, concrete_dir: Path, trained_model_dir: Path, gcs_bucket: str):
    inputs = subset(concrete_dir, tmp_path / "survey" / "images", count=4)
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a photo")
    with zipfile.ZipFile(tmp_path / "survey" / "flight.zip", "w") as archive:
        for path in sorted((concrete_dir / "Positive").glob("*.jpg"))[10:14]:
            archive.write(path, f"flight/{path.name}")
    upload_tree(tmp_path / "survey", f"{gcs_bucket}/survey")
    model = f"{gcs_bucket}/models/v1"
    upload_tree(trained_model_dir, model)
    gcs_out = f"{gcs_bucket}/runs/night1"

    local_out = tmp_path / "local-out"
    local = run(["--input", str(tmp_path / "survey" / "images"),
                 "--input", str(tmp_path / "survey" / "flight.zip"),
                 "--model", str(trained_model_dir), "--output", str(local_out), IN_MEMORY])
    remote = run(["--input", f"{gcs_bucket}/survey/images",
                  "--input", f"{gcs_bucket}/survey/flight.zip",
                  "--model", model, "--output", gcs_out, IN_MEMORY])

    assert remote is not None and local is not None
    assert remote["seen"] == local["seen"] == 8 + 1 + 4
    assert (remote["scored"], remote["failed"]) == (12, 1)
    assert remote["accounting_ok"] is True
    assert remote["model_version"] == local["model_version"]
    assert remote["model_dir"] == model
    assert json.loads(read_gcs(f"{gcs_out}/summary.json")) == remote
    assert "accounted for" in read_gcs(f"{gcs_out}/report.html").decode()
    for kind in ("predictions", "errors"):
        assert remote["outputs"][kind] == gcs_files(f"{gcs_out}/{kind}-*"), kind
        assert all(path.startswith(f"{gcs_out}/") for path in remote["outputs"][kind])

    remote_rows = prediction_rows([read_gcs(p).decode() for p in remote["outputs"]["predictions"]])
    local_rows = prediction_rows([Path(p).read_text() for p in local["outputs"]["predictions"]])
    assert len(remote_rows) == 12
    assert any("flight.zip!flight/" in row["uri"] for row in remote_rows)
    assert all(row["uri"].startswith(f"{gcs_bucket}/survey/") for row in remote_rows)
    assert (comparable(remote_rows, f"{gcs_bucket}/survey/")
            == comparable(local_rows, f"{tmp_path}/survey/"))

    errors = [json.loads(line) for path in remote["outputs"]["errors"]
              for line in read_gcs(path).decode().splitlines()]
    assert [(e["uri"], e["stage"]) for e in errors] == [
        (f"{gcs_bucket}/survey/images/broken.jpg", "decode")]

    with pytest.raises(SetupError, match="already holds the output of a run"):
        run(["--input", f"{gcs_bucket}/survey/images", "--model", model, "--output", gcs_out])
