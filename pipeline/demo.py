"""The product on its embedded default: the shipped field model scores a bundled sample survey.

``python -m pipeline.demo [--output demo-output]``

The sample (``pipeline/sample_survey/``) holds real photos from permissively licensed public
crack sets, none of which the shipped model saw in training; ``truth.csv`` says what each
source's own labels say of them, and each photo carries the GPS EXIF of an illustrative
flight (``pipeline.survey_geotags``). Scoring runs on the DirectRunner, offline, in seconds; the
demo prints each verdict beside that truth and where the predictions, the error list and
the report are.
"""
from __future__ import annotations

import argparse
import csv
import glob
import logging
import os
import shutil
import time
from typing import Any

from crackscan import cli, verbosity
from pipeline import score

SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_survey")
PHOTOS_DIR = os.path.join(SAMPLE_DIR, "photos")
TRUTH_FILE = os.path.join(SAMPLE_DIR, "truth.csv")


def read_truth() -> dict[str, dict[str, str]]:
    """``photo name -> {truth, source, licence}`` of the bundled sample."""
    with open(TRUTH_FILE, newline="") as handle:
        return {row["photo"]: row for row in csv.DictReader(handle)}


def read_rows(output: str) -> dict[str, dict[str, str]]:
    rows = {}
    for path in glob.glob(os.path.join(output, "predictions-*.csv")):
        with open(path, newline="") as handle:
            rows |= {os.path.basename(row["uri"]): row for row in csv.DictReader(handle)}
    return rows


def print_against_truth(rows: dict[str, dict[str, str]], truth: dict[str, dict[str, str]]
                        ) -> int:
    """One line per photo, verdict beside truth; returns how many verdicts match it."""
    print(f"\n{'photo':<34}{'source':<13}{'truth':<10}{'verdict':<10}{'p(crack)':>9}  "
          f"positive tiles")
    correct = 0
    for name, expected in sorted(truth.items()):
        row = rows.get(name)
        if row is None:
            print(f"{name:<34}{expected['source']:<13}{expected['truth']:<10}in errors")
            continue
        correct += row["label"] == expected["truth"]
        mark = "" if row["label"] == expected["truth"] else "  <- wrong"
        print(f"{name:<34}{expected['source']:<13}{expected['truth']:<10}{row['label']:<10}"
              f"{float(row['crack_probability']):>9.3f}  {row['positive_tiles']}/"
              f"{row['tiles']}{mark}")
    return correct


def parser() -> argparse.ArgumentParser:
    parser = cli.command_parser("pipeline.demo", __doc__.split("\n\n")[0])
    parser.add_argument("--output", default="demo-output",
                        help="folder for the run's outputs; replaced on every run (default: "
                             "demo-output)")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = cli.parse_args(parser(), argv)
    verbosity.configure(argv, logging.WARNING)
    started = time.monotonic()
    if os.path.exists(args.output):
        shutil.rmtree(args.output)
    truth = read_truth()
    print(f"scoring {len(truth)} sample photos ({PHOTOS_DIR}) with the shipped model "
          f"({score.SHIPPED_MODEL_DIR}) ...", flush=True)
    summary = score.run(["--input", PHOTOS_DIR, "--output", args.output, "--write-tiles"])
    correct = print_against_truth(read_rows(args.output), truth)
    print(f"\n{correct} of {len(truth)} verdicts match the sources' labels; "
          f"{summary['scored']} scored, {summary['failed']} failed, in "
          f"{time.monotonic() - started:.0f}s.")
    print(f"  predictions: {args.output}/predictions-*.csv  (one row per photo)")
    print(f"  tiles:       {args.output}/tiles-*.jsonl  (every tile's box and probability)")
    print(f"  errors:      {args.output}/errors-*.jsonl")
    print(f"  map:         {args.output}/cracks.geojson, cracks.kml  ({summary['geotagged']} "
          f"geotagged photos, for QGIS or Google Earth)")
    print(f"  report:      {os.path.abspath(args.output)}/report.html")
    return {"summary": summary, "correct": correct, "photos": len(truth)}



console = cli.console_script(main)


if __name__ == "__main__":
    main()
