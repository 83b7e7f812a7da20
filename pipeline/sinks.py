"""Rows to sharded files under the output prefix, through Beam's text sink.

Beam writes shards to a temporary folder and renames them into place when the job
finishes, so a run that fails part-way leaves no half-written ``predictions-*`` file that a
later ``--skip-scored`` could take for a finished one.
"""
from __future__ import annotations

import apache_beam as beam

from crackscan.model_card import join
from pipeline.records import csv_header, csv_line, json_line

FORMATS = ("csv", "jsonl")


class WriteJsonLines(beam.PTransform):
    """Dict rows to ``OUT/<name>-SSSSS-of-NNNNN.jsonl``; outputs the names of the files."""

    def __init__(self, output: str, name: str) -> None:
        super().__init__()
        self._prefix = join(output, name)

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return (rows
                | "Encode" >> beam.Map(json_line)
                | "Write" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl"))


class WritePredictions(beam.PTransform):
    """Prediction rows to ``OUT/predictions-*.csv`` (header in every shard) or ``.jsonl``."""

    def __init__(self, output: str, file_format: str) -> None:
        super().__init__()
        if file_format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {file_format!r}")
        self._output = output
        self._format = file_format

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        if self._format == "jsonl":
            return rows | "Jsonl" >> WriteJsonLines(self._output, "predictions")
        return (rows
                | "Encode" >> beam.Map(csv_line)
                | "Write" >> beam.io.WriteToText(join(self._output, "predictions"),
                                                 file_name_suffix=".csv",
                                                 header=csv_header()))
