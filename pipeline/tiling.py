"""Decode an image once and cut it into tiles of the size the model was trained on.

The model saw 227x227 patches of concrete in training; a 4800x6000 survey photo shrunk to
that size would turn a hairline crack into nothing. So large photos are scored tile by tile
at their own resolution, with overlapping tiles (a crack on one tile's border lies well
inside its neighbour), and small photos are scored whole. Tiles are emitted one at a time
so a worker holds the decoded photo plus the tiles of one model batch, never all of them.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from PIL import Image

from crackscan.decode import DecodeError, decode_rgb
from pipeline.records import ImageInfo, SourceImage, TileKey, error_row

TILES, INFOS, ERRORS = "tiles", "infos", "errors"
# Three quarters of a tile: every point of the photo lies at least 1/8 tile from the border of
# some tile that contains it, at the price of ~1.8x the tiles of a gapless grid.
DEFAULT_STRIDE_FRACTION = 0.75


class TilingError(ValueError):
    """An image that decodes but cannot be cut into tiles within the pixel limit."""


def default_stride(tile_size: int) -> int:
    return max(1, round(tile_size * DEFAULT_STRIDE_FRACTION))


def _starts(length: int, tile_size: int, stride: int) -> list[int]:
    """Tile origins along one axis, evenly spaced at most ``stride`` apart, the first on one
    edge and the last on the other: every tile is full size and none nearly repeats another
    (as a regular grid plus one edge-aligned tile would, a few pixels from its neighbour)."""
    if length <= tile_size:
        return [0]
    span = length - tile_size
    gaps = -(-span // stride)
    return [i * span // gaps for i in range(gaps + 1)]


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image lie, on the canvas they are cut from and on the original.

    The canvas is the image itself, or the image resized when it is smaller than a tile in
    some dimension: scored whole when it fits in one tile, otherwise scaled up until its
    short side fills a tile.
    """

    width: int
    height: int
    canvas_width: int
    canvas_height: int
    tile_size: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.xs) * len(self.ys)

    def box(self, x0: int, y0: int) -> tuple[int, int, int, int]:
        """The tile at canvas ``(x0, y0)`` in original pixels, rounded outwards (exact ints)."""
        x1, y1 = x0 + self.tile_size, y0 + self.tile_size
        return (x0 * self.width // self.canvas_width,
                y0 * self.height // self.canvas_height,
                -(-x1 * self.width // self.canvas_width),
                -(-y1 * self.height // self.canvas_height))

    def canvas(self, rgb: np.ndarray) -> np.ndarray:
        if (self.canvas_width, self.canvas_height) == (self.width, self.height):
            return rgb
        resized = Image.fromarray(rgb).resize((self.canvas_width, self.canvas_height),
                                              Image.Resampling.BILINEAR)
        return np.asarray(resized)

    def tiles(self, canvas: np.ndarray
              ) -> Iterator[tuple[int, tuple[int, int, int, int], np.ndarray]]:
        """``(index, box, pixels)`` in row-major order; pixels are copies, not views, so a
        tile in flight does not keep the whole canvas alive."""
        size = self.tile_size
        index = 0
        for y0 in self.ys:
            for x0 in self.xs:
                yield index, self.box(x0, y0), canvas[y0:y0 + size, x0:x0 + size].copy()
                index += 1


def plan_tiles(width: int, height: int, tile_size: int, stride: int,
               max_pixels: int) -> TilePlan:
    if width <= tile_size and height <= tile_size:
        canvas_width = canvas_height = tile_size
    elif min(width, height) < tile_size:
        # Integer arithmetic so the short side is exactly one tile, whatever the ratio.
        if width < height:
            canvas_width, canvas_height = tile_size, -(-height * tile_size // width)
        else:
            canvas_width, canvas_height = -(-width * tile_size // height), tile_size
        if canvas_width * canvas_height > max_pixels:
            raise TilingError(
                f"{width}x{height} image is too narrow to tile: scaling its short side up to "
                f"the {tile_size}-pixel tile makes {canvas_width}x{canvas_height} = "
                f"{canvas_width * canvas_height} pixels, over the {max_pixels}-pixel limit")
    else:
        canvas_width, canvas_height = width, height
    return TilePlan(width, height, canvas_width, canvas_height, tile_size,
                    tuple(_starts(canvas_width, tile_size, stride)),
                    tuple(_starts(canvas_height, tile_size, stride)))


class DecodeAndTileFn(beam.DoFn):
    """``SourceImage`` -> ``(TileKey, pixels)`` tiles, plus its ``ImageInfo`` or an error.

    The info leaves before the first tile and only once every step that can fail for this
    image has passed, so an image has either an info and all its tiles, or one error row.
    """

    def __init__(self, tile_size: int, stride: int, max_pixels: int) -> None:
        self._tile_size = tile_size
        self._stride = stride
        self._max_pixels = max_pixels
        self._tiles = Metrics.counter("crackscan", "tiles")
        self._decode_failed = Metrics.counter("crackscan", "failed_decode")
        self._tile_failed = Metrics.counter("crackscan", "failed_tile")

    def process(self, image: SourceImage
                ) -> Iterator[tuple[TileKey, np.ndarray] | TaggedOutput]:
        try:
            rgb = decode_rgb(image.data, self._max_pixels)
        except DecodeError as exc:
            self._decode_failed.inc()
            yield TaggedOutput(ERRORS, error_row(image.uri, "decode", str(exc)))
            return
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
        yield TaggedOutput(INFOS, ImageInfo(image.uri, image.sha256, width, height, plan.count))
        for index, box, pixels in plan.tiles(canvas):
            self._tiles.inc()
            yield TileKey(image.uri, index, box, plan.count), pixels


class DecodeAndTile(beam.PTransform):
    """``SourceImage``s to ``{"tiles": (TileKey, pixels), "infos": ImageInfo, "errors": row}``."""

    def __init__(self, tile_size: int, stride: int, max_pixels: int) -> None:
        super().__init__()
        self._fn = DecodeAndTileFn(tile_size, stride, max_pixels)

    def expand(self, images: beam.PCollection) -> dict[str, beam.PCollection]:
        outputs = images | "DecodeAndTile" >> beam.ParDo(self._fn).with_outputs(
            INFOS, ERRORS, main=TILES)
        return {TILES: outputs[TILES], INFOS: outputs[INFOS], ERRORS: outputs[ERRORS]}
