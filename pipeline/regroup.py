"""Tile scores back to one verdict per image.

An image is scored only when every one of its tiles came back from the model: a verdict on
part of a photo could call a cracked wall intact, so such an image becomes an error row.
"""
from __future__ import annotations

import datetime
import logging
from typing import Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from crackscan.model_card import ModelCard
from pipeline.records import ImageInfo, ScoredImage, TileScore, error_row

SCORED, ERRORS = "scored", "errors"
LOG_EVERY = 500


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class AssembleImageFn(beam.DoFn):
    """``(uri, {"info", "scores", "failed"})`` to a ``ScoredImage`` or an inference error."""

    def __init__(self, spec: ModelCard) -> None:
        self._spec = spec
        self._scored = Metrics.counter("crackscan", "scored_by_model")
        self._failed = Metrics.counter("crackscan", "failed_inference")
        self._count = 0

    def process(self, grouped: tuple[str, dict[str, Iterable]]
                ) -> Iterator[ScoredImage | TaggedOutput]:
        uri, groups = grouped
        infos: list[ImageInfo] = list(groups["info"])
        scores: list[TileScore] = sorted(groups["scores"])
        failures = sorted(set(groups["failed"]))
        if len(infos) != 1:
            # Tiling emits exactly one info per uri before its tiles; anything else is a bug
            # that would make the accounting lie, so the run stops here.
            raise RuntimeError(f"{uri}: {len(infos)} image records reached regrouping")
        info = infos[0]
        self._count += 1
        if self._count % LOG_EVERY == 0:
            logging.info("assembled %d images so far in this worker", self._count)
        if failures or [s.tile for s in scores] != list(range(info.tiles)):
            self._failed.inc()
            reason = "; ".join(failures) or (
                f"model returned {len(scores)} tile results for {info.tiles} tiles")
            yield TaggedOutput(ERRORS, error_row(uri, "inference", reason))
            return
        self._scored.inc()
        threshold = self._spec.threshold
        # The rounded probabilities decide, so anyone can recompute a label from the rows.
        crack_probability = self._spec.photo_probability([s.crack_probability
                                                          for s in scores])
        row = {
            "uri": uri,
            "label": self._spec.label(crack_probability),
            "crack_probability": crack_probability,
            "threshold": threshold,
            "width": info.width,
            "height": info.height,
            "tiles": info.tiles,
            "positive_tiles": sum(s.crack_probability >= threshold for s in scores),
            "model_version": self._spec.version,
            "scored_at": utc_now(),
            "sha256": info.sha256,
            **info.metadata.columns(),
        }
        yield ScoredImage(row, tuple(scores))


class RegroupByImage(beam.PTransform):
    """``{"info", "scores", "failed"}`` keyed by uri to ``{"scored", "errors"}``."""

    def __init__(self, spec: ModelCard) -> None:
        super().__init__()
        self._spec = spec

    def expand(self, keyed: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        outputs = (keyed
                   | "GroupByUri" >> beam.CoGroupByKey()
                   | "Assemble" >> beam.ParDo(AssembleImageFn(self._spec)).with_outputs(
                       ERRORS, main=SCORED))
        return {SCORED: outputs[SCORED], ERRORS: outputs[ERRORS]}
