"""Prediction and error rows to BigQuery tables, with one schema shared by sink and tests.

The schema is derived from the CSV columns in ``pipeline.records`` (so a new column cannot
reach the files but not the table), typed as the CSV reader types them, with ``scored_at``
as a TIMESTAMP. The predictions table is partitioned by day of ``scored_at``: the nightly
dashboards read one night at a time and pay only for that partition.

The photo metadata columns (position, capture time, camera, gimbal) and the ground
sampling distance's are NULLABLE: a photo has them only when its camera wrote them (or the
user gave the GSD). ``captured_at`` is a STRING, not a TIMESTAMP:
cameras often record the local time without its UTC offset, and BigQuery would read such a
time as UTC, moving the flight by hours; the ISO 8601 text keeps what the camera wrote.
A table created before these columns existed gains them at the next load
(``ALLOW_FIELD_ADDITION``) instead of refusing it.
"""
from __future__ import annotations

import argparse
import re
from typing import Any, NamedTuple

import apache_beam as beam

from pipeline.records import FLOAT_FIELDS, INT_FIELDS, OPTIONAL_FIELDS, PREDICTION_FIELDS

ERROR_FIELDS = ("uri", "stage", "error")
ERRORS_SUFFIX = "_errors"
TIME_PARTITIONING = {"type": "DAY", "field": "scored_at"}
SCHEMA_UPDATE_OPTIONS = ["ALLOW_FIELD_ADDITION"]
# PROJECT:DATASET.TABLE; project ids may carry a domain prefix (example.com:my-project).
TABLE_SPEC = re.compile(r"^(?P<project>(?:[a-z][-a-z0-9.]*:)?[a-z][-a-z0-9]{4,28}[a-z0-9]):"
                        r"(?P<dataset>[A-Za-z0-9_]{1,1024})\.(?P<table>[A-Za-z0-9_-]{1,1000})$")


class TableSpec(NamedTuple):
    project: str
    dataset: str
    table: str

    def __str__(self) -> str:
        return f"{self.project}:{self.dataset}.{self.table}"

    @property
    def errors(self) -> "TableSpec":
        return self._replace(table=self.table + ERRORS_SUFFIX)


def table_spec(text: str) -> TableSpec:
    """``--bigquery-table``'s argparse type: refused on the command line, not on a worker."""
    match = TABLE_SPEC.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not PROJECT:DATASET.TABLE (e.g. my-project:inspection.cracks)")
    return TableSpec(**match.groupdict())


def _column_type(field: str) -> str:
    if field in FLOAT_FIELDS:
        return "FLOAT"
    if field in INT_FIELDS:
        return "INTEGER"
    return "TIMESTAMP" if field == "scored_at" else "STRING"


def _schema(columns: dict[str, str], nullable: frozenset[str] = frozenset()
            ) -> dict[str, Any]:
    return {"fields": [{"name": name, "type": kind,
                        "mode": "NULLABLE" if name in nullable else "REQUIRED"}
                       for name, kind in columns.items()]}


def prediction_schema() -> dict[str, Any]:
    """BigQuery's JSON form of the predictions schema (what Beam and the REST API take)."""
    return _schema({field: _column_type(field) for field in PREDICTION_FIELDS},
                   OPTIONAL_FIELDS)


def error_schema() -> dict[str, Any]:
    return _schema(dict.fromkeys(ERROR_FIELDS, "STRING"))


def prediction_columns(row: dict[str, Any]) -> dict[str, Any]:
    """A prediction row as BigQuery takes it: exactly the schema's columns."""
    return {field: row[field] for field in PREDICTION_FIELDS}


def error_columns(row: dict[str, str]) -> dict[str, str]:
    return {field: row[field] for field in ERROR_FIELDS}


class WriteBigQuery(beam.PTransform):
    """``{"predictions": rows, "errors": rows}`` appended to TABLE and TABLE_errors.

    Load jobs (``FILE_LOADS``) rather than streaming inserts: a batch job gains nothing
    from rows appearing seconds earlier, load jobs are free while streaming inserts are
    billed per GB, and a failed job leaves no partial load. They stage files under
    ``--temp_location``, which Dataflow requires anyway. Tables are created when missing.
    """

    def __init__(self, table: TableSpec) -> None:
        super().__init__()
        self._table = table

    def expand(self, pcolls: dict[str, beam.PCollection]) -> dict[str, Any]:
        method = beam.io.WriteToBigQuery.Method.FILE_LOADS
        common = {"method": method,
                  "create_disposition": beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
                  "write_disposition": beam.io.BigQueryDisposition.WRITE_APPEND}
        return {
            "predictions": (pcolls["predictions"]
                            | "PredictionColumns" >> beam.Map(prediction_columns)
                            | "Predictions" >> beam.io.WriteToBigQuery(
                                str(self._table), schema=prediction_schema(),
                                additional_bq_parameters={
                                    "timePartitioning": TIME_PARTITIONING,
                                    "schemaUpdateOptions": SCHEMA_UPDATE_OPTIONS},
                                **common)),
            "errors": (pcolls["errors"]
                       | "ErrorColumns" >> beam.Map(error_columns)
                       | "Errors" >> beam.io.WriteToBigQuery(
                           str(self._table.errors), schema=error_schema(), **common)),
        }
