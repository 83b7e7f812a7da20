"""Inputs to image bytes: list the patterns, read files and archive members, set reused aside.

Listing and reading are ``crackscan.sources``' job; this module only spreads them over
workers and sorts every item into one of three outputs, so each input is counted exactly
once: bytes to score, a row reused from an earlier run, or an error.

Everything after reading (decoding, tiling, inference) runs on the worker that read the
image, fused into its step. So what is spread before reading is what decides how many
workers score one archive: a zip is listed down to slices of its members and each slice is
read where it lands, so one zip is scored by every worker; a tar, a stream that cannot be
split, is read by one worker and its images, bytes and all, cross the shuffle once to be
scored by every worker. A runner with one worker (the in-memory DirectRunner) has nothing
to spread over, and the shuffle is left out: a tar's images would only wait in memory.
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from crackscan import sources
from crackscan.model_card import join
from pipeline.records import SourceImage, error_row, parse_predictions

IMAGES, REUSED, ERRORS = "images", "reused", "errors"
# Often enough to watch a local run progress, rare enough not to flood a worker's log.
LOG_EVERY = 500


def previous_predictions_pattern(previous_out: str) -> str:
    return join(previous_out, "predictions-*")


class ReadPreviousPredictions(beam.PTransform):
    """``(sha256, row)`` for every image an earlier run scored with this model and threshold.

    Rows of another model version are dropped: a changed model must score everything again;
    so are rows of another threshold (the card can be re-calibrated without changing the
    model file, and the label depends on it).
    When the same content was scored under several names, one row per content is kept (the
    first uri in sort order), so the side input built from this is deterministic.
    """

    def __init__(self, previous_out: str | None, model_version: str, threshold: float) -> None:
        super().__init__()
        self._previous_out = previous_out
        self._model_version = model_version
        self._threshold = threshold

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if self._previous_out is None:
            return pbegin | "Nothing" >> beam.Create([])
        version, threshold = self._model_version, self._threshold
        return (pbegin
                | "Match" >> fileio.MatchFiles(
                    previous_predictions_pattern(self._previous_out),
                    empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
                | "Open" >> fileio.ReadMatches()
                | "Parse" >> beam.FlatMap(
                    lambda readable: parse_predictions(readable.metadata.path,
                                                       readable.read_utf8()))
                | "SameModel" >> beam.Filter(
                    lambda row: (row["model_version"], row["threshold"]) == (version, threshold))
                | "BySha256" >> beam.Map(lambda row: (row["sha256"], row))
                | "OnePerContent" >> beam.CombinePerKey(
                    lambda rows: min(rows, key=lambda row: row["uri"])))


def locate(uri: str, roots: tuple[str, ...] | None) -> Iterator[sources.Located]:
    """One listed file as far as it must be read where it was listed (see the module)."""
    return sources.locate(sources.file_path(uri), roots=roots)


class ReadItemsFn(beam.DoFn):
    """Reads what ``locate`` left unread (a file, a slice of a zip's members) and sorts
    every item, read here or before, into images, reused rows and errors.

    ``roots`` are the local input folders, which links found in them must not leave. The
    reader keeps the last zip it read open across bundles: a worker gets many slices of
    the same archive, and reopening it would parse its central directory again.
    """

    def __init__(self, roots: tuple[str, ...] | None) -> None:
        self._seen = Metrics.counter("crackscan", "seen")
        self._reused = Metrics.counter("crackscan", "reused")
        self._read_failed = Metrics.counter("crackscan", "failed_read")
        self._count = 0
        self._reader = sources.DeferredReader(roots=roots)  # nothing open yet: picklable

    def teardown(self) -> None:
        self._reader.close()

    def process(self, located: sources.Located, previous: dict[str, dict[str, Any]]
                ) -> Iterator[SourceImage | TaggedOutput]:
        for item in self._reader.read(located):
            self._seen.inc()
            self._count += 1
            if self._count % LOG_EVERY == 0:
                logging.info("read %d inputs so far in this worker", self._count)
            if item.data is None:
                self._read_failed.inc()
                yield TaggedOutput(ERRORS, error_row(item.uri, item.stage, item.error or ""))
                continue
            digest = hashlib.sha256(item.data).hexdigest()
            earlier = previous.get(digest)
            if earlier is not None:
                self._reused.inc()
                yield TaggedOutput(REUSED, {**earlier, "uri": item.uri})
            else:
                yield SourceImage(item.uri, digest, item.data)


class SpreadOverWorkers(beam.PTransform):
    """The shuffle between listing and reading: zip slices, plain files by uri and the
    images of tars go to every worker, and each is read and scored where it lands.

    Without it the runner fuses reading into listing, and one archive is read, decoded,
    tiled and scored by the one worker that listed it.
    """

    def expand(self, located: beam.PCollection) -> beam.PCollection:
        return located | "Reshuffle" >> beam.Reshuffle()


class ReadInputs(beam.PTransform):
    """Patterns to ``{"images": SourceImage, "reused": row, "errors": row}``.

    ``previous`` is ``ReadPreviousPredictions``' output; an input whose content it holds is
    not decoded again and its earlier row is carried over under the uri it has now.
    ``spread`` False leaves out the shuffle that spreads archives over workers, for a runner
    with one worker.
    Files travel between the steps by uri, never by path: a path may hold bytes that are
    not UTF-8, which Beam's string coder cannot encode.
    """

    def __init__(self, patterns: list[str], previous: beam.PCollection,
                 spread: bool = True) -> None:
        super().__init__()
        self._patterns = patterns
        self._previous = previous
        self._spread = spread

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        roots = sources.input_roots(self._patterns)
        located = (pbegin
                   | "Patterns" >> beam.Create(self._patterns)
                   | "List" >> beam.FlatMap(sources.list_uris)
                   # Two patterns may name the same file; the shuffle also spreads the files
                   # over the workers before anything is read.
                   | "EachFileOnce" >> beam.Distinct()
                   | "Locate" >> beam.FlatMap(locate, roots))
        if self._spread:
            located = located | "Spread" >> SpreadOverWorkers()
        outputs = (located
                   | "Read" >> beam.ParDo(ReadItemsFn(roots),
                                          previous=beam.pvalue.AsDict(self._previous))
                   .with_outputs(REUSED, ERRORS, main=IMAGES))
        return {IMAGES: outputs[IMAGES], REUSED: outputs[REUSED], ERRORS: outputs[ERRORS]}
