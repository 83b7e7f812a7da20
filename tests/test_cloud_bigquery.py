"""BigQuery output: the pipeline's rows and schema, loaded into a local BigQuery emulator.

Beam's ``WriteToBigQuery`` cannot be pointed at an emulator: its table and job calls go
through an apitools client built with the fixed ``https://bigquery.googleapis.com`` base URL
and no option to change it, and its streaming inserts through a google-cloud-bigquery client
built without ``client_options``. So the sink's wiring is checked by building the pipeline,
and what it would write (the same row function, schema and partitioning, from the one
definition in ``pipeline.bigquery_sink``) is created and inserted through the same REST
calls with google-cloud-bigquery, then read back and compared with the CSV the run wrote.
"""
from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from google.cloud import bigquery

from cloud_fixtures import BQ_PROJECT, bigquery_client, offline_google_auth  # noqa: F401
from pipeline.bigquery_sink import (TIME_PARTITIONING, TableSpec, error_columns,
                                    error_schema, prediction_columns, prediction_schema,
                                    table_spec)
from pipeline.records import PREDICTION_FIELDS, parse_predictions
from pipeline.score import build, build_parser, prepare, run


def create_table(client: bigquery.Client, table: TableSpec, schema: dict[str, Any],
                 partitioning: dict[str, str] | None = None) -> bigquery.Table:
    """The table ``WriteToBigQuery`` would create: its JSON resource, as Beam sends it."""
    resource: dict[str, Any] = {"tableReference": {"projectId": table.project,
                                                   "datasetId": table.dataset,
                                                   "tableId": table.table},
                                "schema": schema}
    if partitioning:
        resource["timePartitioning"] = partitioning
    return client.create_table(bigquery.Table.from_api_repr(resource))


def read_back(client: bigquery.Client, table: TableSpec) -> list[dict[str, Any]]:
    query = f"SELECT * FROM `{table.project}.{table.dataset}.{table.table}` ORDER BY uri"
    rows = []
    for row in client.query(query).result():
        row = dict(row)
        for key, value in row.items():
            if isinstance(value, datetime.datetime):
                row[key] = value.astimezone(datetime.timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%SZ")
        rows.append(row)
    return rows


def test_table_spec_is_checked_on_the_command_line():
    spec = table_spec("inspection-prod:surveys.cracks")
    assert spec == TableSpec("inspection-prod", "surveys", "cracks")
    assert str(spec.errors) == "inspection-prod:surveys.cracks_errors"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--input", "x", "--model", "m", "--output", "o",
                                   "--bigquery-table", "surveys.cracks"])


def test_pipeline_rows_and_schema_load_into_bigquery_and_read_back_equal(
        tmp_path: Path, concrete_dir: Path, trained_model_dir: Path,
        bigquery_client: bigquery.Client):
    inputs = tmp_path / "survey"
    inputs.mkdir()
    for label in ("Positive", "Negative"):
        for path in sorted((concrete_dir / label).glob("*.jpg"))[:3]:
            shutil.copyfile(path, inputs / f"{label}-{path.name}")
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a photo")
    table = table_spec(f"{BQ_PROJECT}:inspection.cracks")
    argv = ["--input", str(inputs), "--model", str(trained_model_dir),
            "--output", str(tmp_path / "out")]

    # The sink is part of the job when asked for (built, not run: it would call Google).
    args = build_parser().parse_args([*argv, "--bigquery-table", str(table)])
    pipeline = beam.Pipeline()
    build(pipeline, prepare(args, pipeline.options))
    labels = {transform.unique_name for transform in
              pipeline.to_runner_api().components.transforms.values()}
    assert {"WriteBigQuery/Predictions", "WriteBigQuery/Errors"} <= labels

    summary = run(argv)
    assert summary is not None and (summary["scored"], summary["failed"]) == (6, 1)
    csv_rows = [row for path in summary["outputs"]["predictions"]
                for row in parse_predictions(path, Path(path).read_text())]
    errors = [error_columns(json.loads(line))
              for path in summary["outputs"]["errors"]
              for line in Path(path).read_text().splitlines()]

    bigquery_client.create_dataset(table.dataset)
    created = create_table(bigquery_client, table, prediction_schema(), TIME_PARTITIONING)
    create_table(bigquery_client, table.errors, error_schema())
    assert [(f.name, f.field_type, f.mode)
            for f in bigquery_client.get_table(created).schema] == [
        *((name, kind, "REQUIRED") for name, kind in (
            ("uri", "STRING"), ("label", "STRING"), ("crack_probability", "FLOAT"),
            ("threshold", "FLOAT"), ("width", "INTEGER"), ("height", "INTEGER"),
            ("tiles", "INTEGER"), ("positive_tiles", "INTEGER"), ("model_version", "STRING"),
            ("scored_at", "TIMESTAMP"), ("sha256", "STRING"))),
        *((name, kind, "NULLABLE") for name, kind in (
            ("latitude", "FLOAT"), ("longitude", "FLOAT"), ("altitude_m", "FLOAT"),
            ("captured_at", "STRING"), ("camera_make", "STRING"), ("camera_model", "STRING"),
            ("gimbal_yaw_deg", "FLOAT"), ("gimbal_pitch_deg", "FLOAT"), ("gsd_mm", "FLOAT"),
            ("gsd_source", "STRING"), ("gsd_missing", "STRING"),
            ("crack_length_px", "FLOAT"), ("crack_width_max_px", "FLOAT"),
            ("crack_width_median_px", "FLOAT"), ("crack_length_mm", "FLOAT"),
            ("crack_width_max_mm", "FLOAT"), ("crack_width_median_mm", "FLOAT"),
            ("mask", "STRING")))]
    partitioning = bigquery_client.get_table(created).time_partitioning
    assert (partitioning.type_, partitioning.field) == ("DAY", "scored_at")

    for spec, rows in ((table, [prediction_columns(row) for row in csv_rows]),
                       (table.errors, errors)):
        table_id = f"{spec.project}.{spec.dataset}.{spec.table}"
        assert bigquery_client.insert_rows_json(table_id, rows) == []

    stored = read_back(bigquery_client, table)
    assert stored == sorted(csv_rows, key=lambda row: row["uri"])
    assert all(list(row) == list(PREDICTION_FIELDS) for row in stored)
    assert read_back(bigquery_client, table.errors) == [
        {"uri": str(inputs / "broken.jpg"), "stage": "decode", "error": errors[0]["error"]}]
