"""Tile scores back to one verdict per image.

An image is scored only when every one of its tiles came back from the model: a verdict on
part of a photo could call a cracked wall intact, so such an image becomes an error row.
An image of one tile (every lab patch, every small photo) has its verdict in its one score
and needs no group by key. The row also gets the photo's ground sampling distance, from
``--gsd-mm`` or its metadata (``crackscan.gsd``).
"""
from __future__ import annotations

import datetime
import logging
from typing import Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from crackscan.gsd import ground_sampling
from crackscan.model_card import ModelCard
from pipeline.records import NO_MEASUREMENT, ImageInfo, ScoredImage, TileScore, error_row

SCORED, ERRORS = "scored", "errors"
LOG_EVERY = 500


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def scored_image(spec: ModelCard, info: ImageInfo, scores: list[TileScore],
                 gsd_mm: float | None = None) -> ScoredImage:
    """The verdict row of an image all of whose tiles were scored, in tile order;
    ``gsd_mm`` is ``--gsd-mm``, which wins over the photo's own metadata."""
    # The rounded probabilities decide, so anyone can recompute a label from the rows.
    crack_probability = spec.photo_probability([s.crack_probability for s in scores])
    row = {
        "uri": info.uri,
        "label": spec.label(crack_probability),
        "crack_probability": crack_probability,
        "threshold": spec.photo_cutoff,
        "width": info.width,
        "height": info.height,
        "tiles": info.tiles,
        "positive_tiles": sum(s.crack_probability >= spec.threshold for s in scores),
        # One worker scores all of an image's tiles, with one file.
        "model_version": scores[0].model_version or spec.version,
        "scored_at": utc_now(),
        "sha256": info.sha256,
        **info.metadata.columns(),
        **ground_sampling(info.metadata, info.width, info.height, gsd_mm).columns(),
        # Measured after the verdict, where the mask model runs (pipeline.masks).
        **NO_MEASUREMENT,
    }
    return ScoredImage(row, tuple(scores), len(info.metadata.warnings))


class _Assemble(beam.DoFn):
    """Counts and logs the images assembled into verdicts in this worker."""

    def __init__(self, spec: ModelCard, gsd_mm: float | None = None) -> None:
        self._spec = spec
        self._gsd_mm = gsd_mm
        self._scored = Metrics.counter("crackscan", "scored_by_model")
        self._count = 0

    def _verdict(self, info: ImageInfo, scores: list[TileScore]) -> ScoredImage:
        self._scored.inc()
        self._count += 1
        if self._count % LOG_EVERY == 0:
            logging.info("assembled %d images so far in this worker", self._count)
        return scored_image(self._spec, info, scores, self._gsd_mm)


class AssembleImageFn(_Assemble):
    """``(uri, {"info", "scores", "failed"})`` to a ``ScoredImage`` or an inference error.

    An image of one tile whose tile failed arrives here without an info (it rode in the
    tile's key): its failures alone make its error row.
    """

    def __init__(self, spec: ModelCard, gsd_mm: float | None = None) -> None:
        super().__init__(spec, gsd_mm)
        self._failed = Metrics.counter("crackscan", "failed_inference")

    def process(self, grouped: tuple[str, dict[str, Iterable]]
                ) -> Iterator[ScoredImage | TaggedOutput]:
        uri, groups = grouped
        infos: list[ImageInfo] = list(groups["info"])
        scores: list[TileScore] = sorted(groups["scores"])
        failures = sorted(set(groups["failed"]))
        if len(infos) > 1 or not (infos or failures) or (scores and not infos):
            # Tiling emits exactly one info per uri of several tiles, before its tiles;
            # anything else is a bug that would make the accounting lie: the run stops here.
            raise RuntimeError(f"{uri}: {len(infos)} image records and {len(scores)} tile "
                               f"scores reached regrouping")
        if failures or [s.tile for s in scores] != list(range(infos[0].tiles)):
            self._failed.inc()
            reason = "; ".join(failures) or (
                f"model returned {len(scores)} tile results for {infos[0].tiles} tiles")
            yield TaggedOutput(ERRORS, error_row(uri, "inference", reason))
            return
        yield self._verdict(infos[0], scores)


class AssembleSingleTileFn(_Assemble):
    """``(ImageInfo, TileScore)`` of an image of one tile to its ``ScoredImage``."""

    def process(self, scored: tuple[ImageInfo, TileScore]) -> Iterator[ScoredImage]:
        info, score = scored
        yield self._verdict(info, [score])


class RegroupByImage(beam.PTransform):
    """``{"info", "scores", "failed"}`` keyed by uri, and ``"single"`` (ImageInfo,
    TileScore) pairs, to ``{"scored", "errors"}``. Only images of several tiles, and failed
    ones, pass through the group by key."""

    def __init__(self, spec: ModelCard, gsd_mm: float | None = None) -> None:
        super().__init__()
        self._spec = spec
        self._gsd_mm = gsd_mm

    def expand(self, inputs: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        keyed = {name: inputs[name] for name in ("info", "scores", "failed")}
        assemble = AssembleImageFn(self._spec, self._gsd_mm)
        outputs = (keyed
                   | "GroupByUri" >> beam.CoGroupByKey()
                   | "Assemble" >> beam.ParDo(assemble).with_outputs(ERRORS, main=SCORED))
        single = inputs["single"] | "AssembleSingleTile" >> beam.ParDo(
            AssembleSingleTileFn(self._spec, self._gsd_mm))
        scored = (outputs[SCORED], single) | "AllScored" >> beam.Flatten()
        return {SCORED: scored, ERRORS: outputs[ERRORS]}
