"""Decode an image once and cut it into tiles of the size the model was trained on.

The model saw 227x227 patches of concrete in training; a 4800x6000 survey photo shrunk to
that size would turn a hairline crack into nothing. So large photos are scored tile by tile
at their own resolution, with overlapping tiles (a crack on one tile's border lies well
inside its neighbour), and small photos are scored whole. Tiles are emitted one at a time
so a worker holds the decoded photo plus the tiles of one model batch, never all of them.
The photo's position, time and camera are read from the same opening of the file.
"""
from __future__ import annotations

import logging
from typing import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from crackscan.decode import DecodeError, decode_photo
from crackscan.tiles import TilingError, plan_tiles
from pipeline.records import ImageInfo, SourceImage, TileKey, error_row

TILES, INFOS, ERRORS = "tiles", "infos", "errors"


class DecodeAndTileFn(beam.DoFn):
    """``SourceImage`` -> ``(TileKey, pixels)`` tiles, plus its ``ImageInfo`` or an error.

    The info leaves before the first tile, or inside the key of an image's only tile, and
    only once every step that can fail for this image has passed, so an image has either an
    info and all its tiles, or one error row.
    Metadata that cannot be trusted is left out of the info, counted and logged, never a
    reason to fail the image.
    """

    def __init__(self, tile_size: int, stride: int, max_pixels: int) -> None:
        self._tile_size = tile_size
        self._stride = stride
        self._max_pixels = max_pixels
        self._tiles = Metrics.counter("crackscan", "tiles")
        self._decode_failed = Metrics.counter("crackscan", "failed_decode")
        self._tile_failed = Metrics.counter("crackscan", "failed_tile")
        self._metadata_warnings = Metrics.counter("crackscan", "metadata_warnings")

    def process(self, image: SourceImage
                ) -> Iterator[tuple[TileKey, np.ndarray] | TaggedOutput]:
        try:
            rgb, metadata = decode_photo(image.data, self._max_pixels, image.uri)
        except DecodeError as exc:
            self._decode_failed.inc()
            yield TaggedOutput(ERRORS, error_row(image.uri, "decode", str(exc)))
            return
        for warning in metadata.warnings:
            self._metadata_warnings.inc()
            logging.warning("%s: photo metadata left out: %s", image.uri, warning)
        height, width = rgb.shape[:2]
        try:
            plan = plan_tiles(width, height, self._tile_size, self._stride, self._max_pixels)
            canvas = plan.canvas(rgb)
        except Exception as exc:  # One odd image must not fail the bundle of a whole archive.
            self._tile_failed.inc()
            message = str(exc) if isinstance(exc, TilingError) else f"{type(exc).__name__}: {exc}"
            yield TaggedOutput(ERRORS, error_row(image.uri, "tile", message))
            return
        del rgb  # When the canvas is a resized copy, the original can go while tiles stream.
        info = ImageInfo(image.uri, image.sha256, width, height, plan.count, metadata)
        carried = info if plan.count == 1 else None
        if carried is None:
            yield TaggedOutput(INFOS, info)
        for index, box, pixels in plan.tiles(canvas):
            self._tiles.inc()
            yield TileKey(image.uri, index, box, plan.count, carried), pixels


class DecodeAndTile(beam.PTransform):
    """``SourceImage``s to ``{"tiles": (TileKey, pixels), "infos": ImageInfo, "errors": row}``."""

    def __init__(self, tile_size: int, stride: int, max_pixels: int) -> None:
        super().__init__()
        self._fn = DecodeAndTileFn(tile_size, stride, max_pixels)

    def expand(self, images: beam.PCollection) -> dict[str, beam.PCollection]:
        outputs = images | "DecodeAndTile" >> beam.ParDo(self._fn).with_outputs(
            INFOS, ERRORS, main=TILES)
        return {TILES: outputs[TILES], INFOS: outputs[INFOS], ERRORS: outputs[ERRORS]}
