"""Windows of a field photo, labelled from its crack mask.

A segmentation source says, pixel by pixel, where the cracks are; the classifier needs one
label per window. Windows are cut by :func:`crackscan.tiles.plan_tiles`, the scorer's own
tiling (same tile size, stride and resizing of small photos), so the model trains on exactly
the kind of input it scores. The rule, per window of side ``S`` on the tiling canvas:

- **Positive**: a crack pixel inside the window's central ``S/2 x S/2`` square. The scorer
  overlaps tiles by a quarter, so a crack near a border is also central in a neighbour.
- **Negative**: no crack pixel in the window nor within ``margin`` pixels of it: nothing a
  reader of the window could call a crack, even a crack entering from just outside.
- **Excluded** (label -1): everything in between, a crack near the border but not central.
  Such windows are kept out of training and tile metrics, where either label would teach
  noise, but stay in whole-photo evaluation, where the scorer meets them.
- A Negative window holding joint pixels (formwork or planking joints, a crack look-alike)
  is a **hard negative** and counted as one.
- **Clear crops** (asked for): a photo that gives no Negative window (a brick patch with a
  crack across it) gives instead the largest square of its canvas that no crack pixel comes
  within ``CLEAR_MARGIN`` px of, scaled to a tile: the intact surface around the crack,
  which a crack-segmentation set otherwise never shows the model as intact.

Masks are 8-bit single-channel: 0 background, 255 crack, 128 joint (values at or above
``CRACK_MIN`` count as crack, those between ``JOINT_MIN`` and it as joint, so a mask that was
resampled somewhere still reads as its author meant).
"""
from __future__ import annotations

import dataclasses
import io
from typing import Iterator

import cv2
import numpy as np
from PIL import Image

from crackscan.decode import DecodeError, open_image
from crackscan.labels import EXCLUDED, NEGATIVE, POSITIVE
from crackscan.tiles import TilePlan

CRACK_MIN, JOINT_MIN = 192, 64
DEFAULT_MARGIN = 4
CLEAR_MARGIN = 16  # px between a clear crop and the nearest crack pixel
MIN_CLEAR_SIDE = 96  # px: a smaller square is mostly blur once scaled to a tile
MASK_MODES = ("L", "1", "P")


@dataclasses.dataclass(frozen=True)
class Window:
    """One window of a photo: its place, pixels, label and whether it is a hard negative."""

    index: int
    box: tuple[int, int, int, int]
    pixels: np.ndarray
    label: int
    hard_negative: bool


def decode_mask(data: bytes, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    """The mask as HxW uint8, or :class:`DecodeError` saying why it cannot label ``size``."""
    image = open_image(data, max_pixels)
    if image.mode not in MASK_MODES:
        raise DecodeError(f"mask is {image.mode}, not a single-channel 8-bit mask "
                          f"(0 background, 255 crack, 128 joint)")
    if image.size != size:
        raise DecodeError(f"mask is {image.size[0]}x{image.size[1]} but its image is "
                          f"{size[0]}x{size[1]}")
    try:
        return np.asarray(image.convert("L"), dtype=np.uint8)
    except OSError as exc:
        raise DecodeError(f"corrupt or truncated mask: {exc}") from None


def label_window(mask: np.ndarray, x0: int, y0: int, size: int,
                 margin: int = DEFAULT_MARGIN) -> tuple[int, bool]:
    """``(label, hard_negative)`` of the window at canvas ``(x0, y0)`` by the module's rule."""
    quarter = size // 4
    centre = mask[y0 + quarter:y0 + size - quarter, x0 + quarter:x0 + size - quarter]
    if (centre >= CRACK_MIN).any():
        return POSITIVE, False
    near = mask[max(y0 - margin, 0):y0 + size + margin, max(x0 - margin, 0):x0 + size + margin]
    if (near >= CRACK_MIN).any():
        return EXCLUDED, False
    window = mask[y0:y0 + size, x0:x0 + size]
    return NEGATIVE, bool((window >= JOINT_MIN).any())


def windows(plan: TilePlan, rgb: np.ndarray, mask: np.ndarray,
            margin: int = DEFAULT_MARGIN) -> Iterator[Window]:
    """Every tile of ``plan`` with its label; the mask follows the image onto the canvas
    with nearest-neighbour resampling, so crack stays crack on a resized small photo."""
    canvas = plan.canvas(rgb)
    mask_canvas = plan.canvas(mask, mask=True)
    size = plan.tile_size
    for (index, box, pixels), (_, x0, y0) in zip(plan.tiles(canvas), plan.origins()):
        label, hard = label_window(mask_canvas, x0, y0, size, margin)
        yield Window(index, box, pixels, label, hard)


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless: a window is stored as exactly the pixels the scorer would feed the model."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def largest_clear_square(mask: np.ndarray, margin: int = CLEAR_MARGIN
                         ) -> tuple[int, int, int] | None:
    """``(top, left, side)`` of the largest square whose pixels all lie more than ``margin``
    px from any crack pixel, or None when the mask has no crack (nothing to keep away from)
    or no clear pixel. A square of side ``s`` fits where the clear area survives an
    erosion by an ``s x s`` kernel, so the side is found by bisection over erosions."""
    crack = mask >= CRACK_MIN
    if not crack.any():
        return None
    clear = (cv2.distanceTransform((~crack).astype(np.uint8), cv2.DIST_L2, 5)
             > margin).astype(np.uint8)

    def fitting(side: int) -> np.ndarray:
        # An even kernel's anchor is its centre, rounded down: the top-left corner of a
        # fitting square lies side // 2 up and left of where the eroded pixel survives.
        return cv2.erode(clear, np.ones((side, side), np.uint8), borderValue=0)

    low, high = 0, min(mask.shape)
    while low < high:
        middle = (low + high + 1) // 2
        if fitting(middle).any():
            low = middle
        else:
            high = middle - 1
    if low == 0:
        return None
    rows, cols = np.nonzero(fitting(low))
    return int(rows[0]) - low // 2, int(cols[0]) - low // 2, low


def clear_crop(plan: TilePlan, rgb: np.ndarray, mask: np.ndarray,
               index: int) -> Window | None:
    """The photo's clear crop (see the module's rule) as a Negative window numbered
    ``index``, or None when no clear square of ``MIN_CLEAR_SIDE`` px fits."""
    canvas = plan.canvas(rgb)
    mask_canvas = plan.canvas(mask, mask=True)
    square = largest_clear_square(mask_canvas)
    if square is None or square[2] < MIN_CLEAR_SIDE:
        return None
    top, left, side = square
    size = plan.tile_size
    pixels = cv2.resize(canvas[top:top + side, left:left + side], (size, size),
                        interpolation=cv2.INTER_LINEAR)
    hard = bool((mask_canvas[top:top + side, left:left + side] >= JOINT_MIN).any())
    x0, y0, _, _ = plan.box(left, top)
    _, _, x1, y1 = plan.box(left + side - size, top + side - size)
    return Window(index, (x0, y0, x1, y1), pixels, NEGATIVE, hard)
