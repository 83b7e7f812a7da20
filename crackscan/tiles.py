"""Where the tiles of an image lie: one rule shared by the scorer and the dataset builder.

The model is trained on windows cut from field photos and scores tiles cut from survey
photos; both come from :func:`plan_tiles`, so a window in training is exactly the kind of
input the model meets when scoring (same size, same spacing, same resizing of small images).
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import cv2
import numpy as np

# The scorer runs one worker process per core: OpenCV must not add a thread pool of its own.
cv2.setNumThreads(1)


def resize(pixels: np.ndarray, width: int, height: int, mask: bool = False) -> np.ndarray:
    """``pixels`` resized to ``width`` x ``height`` as training resizes a whole image.

    Photos are resampled as ``tf.image.resize(method="bilinear", antialias=False)`` and the
    model's own ``Resizing`` layer do (half-pixel centres, two taps per axis), to about one
    grey level (a quarter on average) and identically on every machine (OpenCV's bit-exact
    bilinear): training shrinks the lab patches that way, and Pillow's bilinear, which
    antialiases, lands up to 3 levels away from it. It is also 3x faster than Pillow's, and
    every one-tile image pays it. A label ``mask`` is resampled nearest-neighbour (as
    Pillow's ``NEAREST``), so its classes stay classes instead of blending into values no
    label means.
    """
    interpolation = cv2.INTER_NEAREST_EXACT if mask else cv2.INTER_LINEAR_EXACT
    return cv2.resize(pixels, (width, height), interpolation=interpolation)


# Three quarters of a tile: every point of the photo lies at least 1/8 tile from the border of
# some tile that contains it, at the price of ~1.8x the tiles of a gapless grid.
DEFAULT_STRIDE_FRACTION = 0.75


class TilingError(ValueError):
    """An image that decodes but cannot be cut into tiles within the pixel limit."""


# An image at most this much larger than a tile (an eighth: 252 px for 224 px tiles) is scored
# whole, shrunk into one tile, as training resizes a class-folder image: the 227 px lab
# patches would otherwise be four tiles 3 px apart, four model calls on the same pixels.
# Shrinking by at most 1/9 is well inside the +-20% zoom the model is trained under.
ONE_TILE_SLACK = 0.125


def fits_one_tile(width: int, height: int, tile_size: int) -> bool:
    limit = int(tile_size * (1 + ONE_TILE_SLACK))
    return width <= limit and height <= limit


# A 57-pixel short side fills a 227-pixel tile at 4x; narrower strips that also need more
# than one tile hold too little of a surface to judge, at a cost that grows as they narrow.
MAX_STRETCH = 4
# Above any real photo at the default stride (a 120-megapixel image, the default pixel
# limit, is about 4,200 tiles of 227 px; a 4800x6000 photo is 5,561 tiles of 96 px).
DEFAULT_MAX_TILES = 10_000


class TileLimitError(TilingError):
    """An image whose tiles would cost more than one input may. Decoded pixels are bounded
    by ``max_pixels``, but an image narrower than a tile is first stretched until its short
    side fills one: a 1x2000 PNG of 720 bytes would become 2,671 tiles of nothing, the cost
    of a 60-megapixel photo. So an image that needs more than one tile may be stretched by at
    most ``MAX_STRETCH``, and no image may need more than ``max_tiles`` tiles (which also
    catches a ``--tile-stride`` far below the tile size)."""


def check_tile_count(width: int, height: int, tiles: int, tile_size: int,
                     max_tiles: int = DEFAULT_MAX_TILES) -> None:
    """Raises :class:`TileLimitError` when a ``width`` x ``height`` image cut into ``tiles``
    tiles of ``tile_size`` pixels is over either bound."""
    short, long = sorted((width, height))
    if short < tile_size < long and short * MAX_STRETCH < tile_size:
        raise TileLimitError(
            f"{width}x{height} image is a strip {short} pixels wide: scoring it would stretch "
            f"it {tile_size / short:.0f}x into {tiles} tiles of {tile_size} pixels; an image "
            f"that needs more than one tile must be at least {-(-tile_size // MAX_STRETCH)} "
            f"pixels on its short side")
    if tiles > max_tiles:
        raise TileLimitError(f"{width}x{height} image would be cut into {tiles} tiles, over "
                             f"the {max_tiles}-tile limit for one image")


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

    The canvas is the image itself, or the image resized: to one tile when it is at most
    :data:`ONE_TILE_SLACK` larger than a tile (or smaller), scored whole; otherwise, when it is
    smaller than a tile in one dimension, scaled up until its short side fills a tile.
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

    def canvas(self, pixels: np.ndarray, mask: bool = False) -> np.ndarray:
        """The pixels tiles are cut from (see :func:`resize`)."""
        if (self.canvas_width, self.canvas_height) == (self.width, self.height):
            return pixels
        return resize(pixels, self.canvas_width, self.canvas_height, mask)

    def origins(self) -> Iterator[tuple[int, int, int]]:
        """``(index, x0, y0)`` of every tile on the canvas, in row-major order."""
        index = 0
        for y0 in self.ys:
            for x0 in self.xs:
                yield index, x0, y0
                index += 1

    def tiles(self, canvas: np.ndarray
              ) -> Iterator[tuple[int, tuple[int, int, int, int], np.ndarray]]:
        """``(index, box, pixels)`` in row-major order; pixels are copies, not views, so a
        tile in flight does not keep the whole canvas alive."""
        size = self.tile_size
        for index, x0, y0 in self.origins():
            yield index, self.box(x0, y0), canvas[y0:y0 + size, x0:x0 + size].copy()


def plan_tiles(width: int, height: int, tile_size: int, stride: int,
               max_pixels: int, max_tiles: int = DEFAULT_MAX_TILES) -> TilePlan:
    if fits_one_tile(width, height, tile_size):
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
    plan = TilePlan(width, height, canvas_width, canvas_height, tile_size,
                    tuple(_starts(canvas_width, tile_size, stride)),
                    tuple(_starts(canvas_height, tile_size, stride)))
    check_tile_count(width, height, plan.count, tile_size, max_tiles)
    return plan
