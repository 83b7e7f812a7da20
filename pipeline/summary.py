"""The run's closing step: counts, the accounting check, the map files, ``summary.json``
and ``report.html``.

Counts are computed inside the pipeline and handed to one final DoFn as side inputs, so the
summary is written the same way on every runner, after the sinks have renamed their files
into place (their file names are one of the side inputs). That step then counts the rows
that are actually in the files: a runner or sink that loses rows on the way (Beam's
DaskRunner 2.77 drops what a DoFn emits in ``finish_bundle``) still reports the counts the
pipeline meant to write, so only the files can show the loss.

Nothing here grows with the survey: counts are combined, the report gets the first
``ERRORS_SHOWN_PER_STAGE`` errors of each stage and the top K images, and the files are
counted as streams.
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import logging
import posixpath
import time
import uuid
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from crackscan import gsd
from crackscan.decode import decode_rgb
from crackscan.model_card import join
from crackscan.sources import read_uri
from pipeline import geo
from pipeline.records import (MASK_COLUMN, MASK_FOLDER, MASK_STAGE, PREDICTION_FIELDS, STAGES,
                              WRITE_MASK_STAGE, ScoredImage, tile_rows)
from pipeline.run_config import RunConfig
from pipeline.run_status import REPORT_FILE, SUMMARY_FILE
from pipeline.report import MAX_ERRORS_SHOWN, heatmap_thumbnail, render_report

OUTPUT_KINDS = ("predictions", "tiles", "errors")
MASK_FILES = f"{MASK_FOLDER}/*.png"
# The report lists this many errors of each stage (the first by uri); the errors files
# hold all of them.
ERRORS_SHOWN_PER_STAGE = MAX_ERRORS_SHOWN // len(STAGES)
# Duplicated uris named in the accounting message, of however many there are.
DUPLICATES_NAMED = 5


class AccountingError(RuntimeError):
    """Inputs went missing or were counted twice between reading and the outputs."""


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def write_atomically(path: str, data: bytes) -> None:
    """Write under a temporary name, then rename: readers never see half a file."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(temporary) as handle:
        handle.write(data)
    FileSystems.rename([temporary], [path])


class ThumbnailFn(beam.DoFn):
    """A top image's prediction row plus its heat-map PNG (``None`` if it cannot be re-read).

    The photo is read and decoded again here rather than carried from tiling: only K images
    need it, and carrying pixels of every image to the end of the pipeline would not scale.
    """

    def __init__(self, threshold: float, max_pixels: int) -> None:
        self._threshold = threshold
        self._max_pixels = max_pixels

    def process(self, image: ScoredImage) -> Iterator[dict[str, Any]]:
        entry: dict[str, Any] = dict(image.row)
        try:
            rgb = decode_rgb(read_uri(image.row["uri"]), self._max_pixels)
            entry["thumbnail_png"] = heatmap_thumbnail(rgb, list(tile_rows(image)),
                                                       self._threshold,
                                                       mask_png=image.mask_preview)
        except Exception as exc:  # A missing thumbnail must not fail a finished run.
            logging.warning("no thumbnail for %s: %s", image.row["uri"], exc)
            entry["thumbnail_png"] = None
        yield entry


def _rows_in_file(path: str) -> int:
    """Records in one written shard, read as a stream: a CSV's header is not counted, and
    a record whose quoted field spans lines counts once."""
    with FileSystems.open(path) as handle:
        if posixpath.basename(path).endswith(".csv"):
            text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
            return sum(1 for record in csv.reader(text) if tuple(record) != PREDICTION_FIELDS)
        return sum(1 for line in handle if line.strip())


def rows_in_files(output: str) -> dict[str, int]:
    """Rows of each kind of output file under ``output``, as a reader would find them."""
    counts = {}
    for kind in OUTPUT_KINDS:
        try:
            matched = FileSystems.match([join(output, f"{kind}-*")])[0].metadata_list
        except Exception:  # Beam raises BeamIOError when a pattern matches nothing.
            matched = []
        counts[kind] = sum(_rows_in_file(metadata.path) for metadata in matched)
    return counts


def masks_in_files(output: str) -> int:
    """The mask PNGs under ``output``, as a reader would find them."""
    try:
        return len(FileSystems.match([join(output, MASK_FILES)])[0].metadata_list)
    except Exception:  # Beam raises BeamIOError when a pattern matches nothing.
        return 0


def accounting_problems(counts: dict[str, int], written: dict[str, int], write_tiles: bool,
                        duplicates: Iterable[str] = (), write_masks: bool = False
                        ) -> list[str]:
    """Every way the run's rows fail to add up; none when each input has exactly one row
    (and, with ``write_masks``, each row naming a mask has its PNG)."""
    seen, scored, failed = (counts.get(key, 0) for key in ("seen", "scored", "failed"))
    problems = []
    if seen != scored + failed:
        problems.append(f"seen {seen} != scored {scored} + failed {failed}")
    if written["predictions"] != scored:
        problems.append(f"the predictions files hold {written['predictions']} rows for "
                        f"{scored} scored")
    if written["errors"] != failed:
        problems.append(f"the errors files hold {written['errors']} rows for {failed} failed")
    if write_tiles and written["tiles"] != counts.get("tiles", 0):
        problems.append(f"the tiles files hold {written['tiles']} rows for "
                        f"{counts.get('tiles', 0)} tiles scored")
    if write_masks and written.get("masks", 0) != counts.get("masks_written", 0):
        problems.append(f"the masks folder holds {written.get('masks', 0)} PNGs for "
                        f"{counts.get('masks_written', 0)} rows that name one")
    repeated = counts.get("duplicate_uris", 0)
    if repeated:
        named = ", ".join(repr(uri) for uri in sorted(duplicates))
        problems.append(f"{repeated} uris have more than one row (e.g. {named})")
    return problems


class WriteSummaryFn(beam.DoFn):
    """Writes summary.json and report.html, then fails the run if the accounting is off."""

    def __init__(self, facts: RunConfig) -> None:
        self._facts = facts

    def summary(self, counts: dict[str, int], files: list[str], written: dict[str, int],
                problems: list[str], geotagged: int) -> dict[str, Any]:
        facts = self._facts
        finished = time.time()
        wall_seconds = finished - facts.started
        seen, scored, failed = counts.get("seen", 0), counts.get("scored", 0), counts.get(
            "failed", 0)
        positive = counts.get("positive", 0)
        outputs: dict[str, Any] = {kind: sorted(path for path in files if posixpath.basename(
            path).startswith(kind + "-")) for kind in OUTPUT_KINDS}
        outputs["geojson"] = join(facts.output, geo.GEOJSON_FILE)
        outputs["kml"] = join(facts.output, geo.KML_FILE)
        outputs["summary"] = join(facts.output, SUMMARY_FILE)
        outputs["report"] = join(facts.output, REPORT_FILE)
        return {
            "seen": seen,
            "scored": scored,
            "reused": counts.get("reused", 0),
            "failed": failed,
            "failed_by_stage": {stage: counts.get(f"failed:{stage}", 0) for stage in STAGES},
            "positive": positive,
            "crack_rate": positive / scored if scored else 0.0,
            "tiles": counts.get("tiles", 0),
            "geotagged": geotagged,
            "metadata_warnings": counts.get("metadata_warnings", 0),
            "gsd_known": counts.get("gsd_known", 0),
            "gsd_missing_by_reason": {reason: counts.get(f"gsd_missing:{reason}", 0)
                                      for reason in gsd.REASONS},
            "masks": {**facts.masks(),
                      "images_measured": counts.get("images_measured", 0),
                      "tiles_run": counts.get("mask_tiles", 0),
                      "with_crack": counts.get("with_crack", 0),
                      "masks_written": counts.get("masks_written", 0),
                      "errors": sum(counts.get(f"failed:{stage}", 0)
                                    for stage in (MASK_STAGE, WRITE_MASK_STAGE))},
            "accounting_ok": not problems,
            "accounting": {
                "in_pipeline": {"seen": seen, "scored": scored, "failed": failed,
                                "tiles": counts.get("tiles", 0)},
                "in_files": {kind: written[kind] for kind in (*OUTPUT_KINDS, "masks")
                             if (kind != "tiles" or facts.write_tiles)
                             and (kind != "masks" or facts.write_masks)},
                "duplicate_uris": counts.get("duplicate_uris", 0),
                "problems": problems,
            },
            "model_version": facts.spec.version,
            "model_dir": facts.model_dir,
            "threshold": facts.spec.threshold,
            "photo_threshold": facts.spec.photo_cutoff,
            "positive_class": facts.spec.positive_class,
            "tile_size": facts.tile_size,
            "tile_stride": facts.tile_stride,
            "gsd_mm": facts.gsd_mm,
            "inference": facts.inference(),
            "started_at": _iso(facts.started),
            "finished_at": _iso(finished),
            "wall_seconds": round(wall_seconds, 3),
            "images_per_second": round(seen / wall_seconds, 3) if wall_seconds > 0 else 0.0,
            "inputs": list(facts.inputs),
            "output": facts.output,
            "outputs": outputs,
        }

    def process(self, _: Any, counts: dict[str, int], top: list[dict[str, Any]],
                errors: list[dict[str, str]], files: list[str],
                duplicates: Iterable[str] = (), points: Iterable[dict[str, Any]] = ()
                ) -> Iterator[dict[str, Any]]:
        written = rows_in_files(self._facts.output)
        if self._facts.write_masks:
            written["masks"] = masks_in_files(self._facts.output)
        problems = accounting_problems(counts, written, self._facts.write_tiles, duplicates,
                                       self._facts.write_masks)
        points = list(points)
        summary = self.summary(counts, files, written, problems, len(points))
        write_atomically(summary["outputs"]["geojson"], geo.geojson(points).encode())
        write_atomically(summary["outputs"]["kml"], geo.kml(
            points, self._facts.spec.positive_class).encode())
        write_atomically(summary["outputs"]["summary"],
                         json.dumps(summary, indent=2).encode() + b"\n")
        errors = sorted(errors, key=lambda row: (row["stage"], row["uri"]))
        write_atomically(summary["outputs"]["report"],
                         render_report(summary, top, errors, points).encode())
        logging.info("seen %d = scored %d (reused %d) + failed %d; in the files: %s; "
                     "positive %d; %.1f images/s", summary["seen"], summary["scored"],
                     summary["reused"], summary["failed"], written, summary["positive"],
                     summary["images_per_second"])
        if problems:
            raise AccountingError(f"accounting mismatch: {'; '.join(problems)}; see "
                                  f"{summary['outputs']['summary']}")
        yield summary


def _prediction_events(image: ScoredImage, positive_class: str
                       ) -> Iterator[tuple[str, int]]:
    yield "scored", 1
    yield "positive", int(image.row["label"] == positive_class)
    yield "tiles", len(image.tiles)
    yield "metadata_warnings", image.metadata_warnings
    # A row carried over from a run before the GSD columns has neither: it is not counted.
    if image.row.get("gsd_mm") is not None:
        yield "gsd_known", 1
    elif image.row.get("gsd_missing"):
        yield f"gsd_missing:{image.row['gsd_missing']}", 1
    if image.mask_tiles:
        yield "images_measured", 1
        yield "mask_tiles", image.mask_tiles
    if image.row.get("crack_width_max_px") is not None:
        yield "with_crack", 1
    if image.row.get(MASK_COLUMN):
        yield "masks_written", 1


def _error_events(row: dict[str, str]) -> Iterator[tuple[str, int]]:
    yield "failed", 1
    yield f"failed:{row['stage']}", 1


def _rank(image: ScoredImage) -> tuple[float, str]:
    return image.row["crack_probability"], image.row["uri"]


def _uri(image_or_row: ScoredImage | dict[str, Any]) -> str:
    row = image_or_row.row if isinstance(image_or_row, ScoredImage) else image_or_row
    return row["uri"]


class Summarize(beam.PTransform):
    """``{"images", "reused", "read_errors", "predictions", "errors", "files"}`` to the summary.

    ``seen`` counts what reading produced (images to score, reused rows, unreadable items);
    ``scored`` and ``failed`` count what reached the outputs. They are counted separately on
    purpose: the check that they agree is what catches an image lost on the way. Uris are
    counted too: one with two rows (scored and failed, or twice either) fails the check.
    """

    def __init__(self, facts: RunConfig) -> None:
        super().__init__()
        self._facts = facts

    def expand(self, pcolls: dict[str, beam.PCollection]) -> beam.PCollection:
        facts = self._facts
        positive_class = facts.spec.positive_class
        repeated = ((pcolls["predictions"], pcolls["errors"])
                    | "RowsByUri" >> beam.Flatten()
                    | "Uri" >> beam.Map(_uri)
                    | "RowsPerUri" >> beam.combiners.Count.PerElement()
                    | "Repeated" >> beam.Filter(lambda uri_rows: uri_rows[1] > 1)
                    | "RepeatedUri" >> beam.Keys())
        events = (
            (pcolls["images"] | "SeenImages" >> beam.Map(lambda _: ("seen", 1)),
             pcolls["reused"] | "SeenReused" >> beam.FlatMap(
                 lambda _: (("seen", 1), ("reused", 1))),
             pcolls["read_errors"] | "SeenUnreadable" >> beam.Map(lambda _: ("seen", 1)),
             pcolls["predictions"] | "Scored" >> beam.FlatMap(_prediction_events,
                                                              positive_class),
             pcolls["errors"] | "Failed" >> beam.FlatMap(_error_events),
             repeated | "Duplicates" >> beam.Map(lambda _: ("duplicate_uris", 1)))
            | "AllEvents" >> beam.Flatten())
        counts = events | "Count" >> beam.CombinePerKey(sum)
        named = (repeated
                 | "NameSome" >> beam.combiners.Top.Smallest(DUPLICATES_NAMED)
                 | "EachNamed" >> beam.FlatMap(lambda uris: uris))
        shown_errors = (pcolls["errors"]
                        | "ByStage" >> beam.Map(lambda row: (row["stage"], row))
                        | "FirstPerStage" >> beam.combiners.Top.SmallestPerKey(
                            ERRORS_SHOWN_PER_STAGE, key=_uri)
                        | "EachShown" >> beam.FlatMap(lambda stage_rows: stage_rows[1]))
        top = (pcolls["predictions"]
               | "Top" >> beam.combiners.Top.Of(facts.report_top, key=_rank)
               | "EachTop" >> beam.FlatMap(lambda images: images)
               | "Thumbnail" >> beam.ParDo(ThumbnailFn(facts.spec.threshold,
                                                       facts.max_pixels)))
        points = (pcolls["predictions"]
                  | "MapPoints" >> beam.FlatMap(lambda image: geo.point_of(image.row)))
        return (pcolls["predictions"].pipeline
                | "Once" >> beam.Create([None])
                | "Write" >> beam.ParDo(WriteSummaryFn(facts),
                                        counts=beam.pvalue.AsDict(counts),
                                        top=beam.pvalue.AsList(top),
                                        errors=beam.pvalue.AsList(shown_errors),
                                        files=beam.pvalue.AsList(pcolls["files"]),
                                        duplicates=beam.pvalue.AsList(named),
                                        points=beam.pvalue.AsList(points)))
