"""An image's crack mask from the mask model's tiles: which tiles to run it on, and how their
masks make one mask of the image.

The mask model costs a forward pass per tile, like the classifier, so it is run only where
the classifier saw a crack: on every tile at or above the card's tile threshold and on the
tiles around each (a crack seen at one tile's edge runs on into its neighbour, which may
have scored below the threshold). An intact survey costs nothing. Tiles overlap (stride 3/4
of a tile), and a pixel is crack when any tile that holds it says so: the maximum of their
probabilities against the threshold. Each tile's mask is thresholded where the model ran and
travels as packed bits (6 KB for 224 px), which ORed together are exactly that maximum.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import cv2
import numpy as np

from crackscan.crack_measure import CrackMeasurement, measure
from crackscan.tiles import TilePlan

# Long side of the mask kept for the report's thumbnail (twice the thumbnail's 320 px, so
# it still lines up after the thumbnail's own rounding).
PREVIEW_SIDE = 640
# zlib's fastest level: a 0/255 mask is mostly runs of zeros, which every level packs alike.
PNG_COMPRESSION = 1


def tiles_to_mask(plan: TilePlan, probabilities: Sequence[float], threshold: float
                  ) -> tuple[int, ...]:
    """Indices (row-major, as ``plan.origins``) of the tiles at or above ``threshold`` and
    of their eight neighbours in the grid of tiles; none for an image with no such tile."""
    columns, rows = len(plan.xs), len(plan.ys)
    chosen = set()
    for index, probability in enumerate(probabilities):
        if probability < threshold:
            continue
        row, column = divmod(index, columns)
        chosen.update(r * columns + c
                      for r in range(max(0, row - 1), min(rows, row + 2))
                      for c in range(max(0, column - 1), min(columns, column + 2)))
    return tuple(sorted(chosen))


def pack(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """A tile's ``[S, S, 1]`` (or ``[S, S]``) crack probabilities as packed crack bits."""
    return np.packbits(np.asarray(probabilities).reshape(-1) >= threshold)


def unpack(packed: np.ndarray, tile_size: int) -> np.ndarray:
    return np.unpackbits(packed, count=tile_size * tile_size).reshape(
        tile_size, tile_size).astype(bool)


def stitch(plan: TilePlan, tile_masks: Iterable[tuple[int, np.ndarray]]) -> np.ndarray:
    """The image's boolean mask at its own size from ``(tile index, packed bits)``: ORed on
    the canvas the tiles were cut from, then, where that canvas was a resized copy (a small
    image scored whole, a strip scaled up), resized back to the image (bilinear on 0/255,
    halfway: a smooth outline, not nearest-neighbour's steps)."""
    size = plan.tile_size
    origins = {index: (x0, y0) for index, x0, y0 in plan.origins()}
    canvas = np.zeros((plan.canvas_height, plan.canvas_width), dtype=bool)
    for index, packed in tile_masks:
        x0, y0 = origins[index]
        canvas[y0:y0 + size, x0:x0 + size] |= unpack(packed, size)
    if canvas.shape == (plan.height, plan.width):
        return canvas
    resized = cv2.resize(canvas.astype(np.uint8) * 255, (plan.width, plan.height),
                         interpolation=cv2.INTER_LINEAR)
    return resized >= 128


def measure_mask(mask: np.ndarray) -> CrackMeasurement:
    """:func:`crackscan.crack_measure.measure` on the mask's bounding box and one pixel of
    background around it (none beyond the image's own edge): the same figures, since the
    nearest background pixel and the skeleton of every crack lie inside that box, for the
    memory of the box rather than of a 30-megapixel photo."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return measure(mask[:0, :0])
    top, bottom = max(0, rows[0] - 1), min(mask.shape[0], rows[-1] + 2)
    left, right = max(0, columns[0] - 1), min(mask.shape[1], columns[-1] + 2)
    return measure(mask[top:bottom, left:right])


def png(mask: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of the mask, 255 for crack and 0 elsewhere."""
    ok, encoded = cv2.imencode(".png", mask.astype(np.uint8) * 255,
                               [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {mask.shape[1]}x{mask.shape[0]} mask")
    return encoded.tobytes()


def preview(mask: np.ndarray, side: int = PREVIEW_SIDE) -> bytes:
    """The mask shrunk until its long side is at most ``side``, a pixel set wherever any
    pixel of its block is (a 2 px crack on a 6000 px photo still shows), as a PNG."""
    factor = max(1, math.ceil(max(mask.shape) / side))
    height, width = (-(-n // factor) for n in mask.shape)
    padded = np.zeros((height * factor, width * factor), dtype=bool)
    padded[:mask.shape[0], :mask.shape[1]] = mask
    return png(padded.reshape(height, factor, width, factor).any(axis=(1, 3)))
