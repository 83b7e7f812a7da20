"""Length and width of the cracks in a binary mask, in pixels and, given the GSD, millimetres.

Inspection manuals grade a crack by its width (hairline below about 0.1-0.2 mm; 0.3 mm and
more in reinforced concrete calls for action) and by its length. Both are read from the
mask's skeleton, its one-pixel-wide centre line:

- length: the skeleton's steps, a step along a row or column counting 1 and a diagonal step
  sqrt(2). Exact along rows, columns and diagonals; a crack running in between is a staircase
  of both and reads up to 8% long (at 22.5 degrees). The skeleton stops about half a width
  short of a blunt end; real cracks taper to their tips, where that is little.
- width: twice the distance from each skeleton pixel to the nearest background pixel
  (``scipy.ndimage.distance_transform_edt``), less half a pixel. A centre pixel of a crack of
  odd width w lies (w + 1) / 2 from the background, one of the two centre pixels of an even
  width w / 2: twice that minus half a pixel reads w +- 0.5 for both, 1.5 for a 2 px crack.
  The maximum is the crack's grade; the median its typical width.

Thinning a wide crack sprouts short branches from the centre line into the corners of its
ends; a branch from a tip to a junction no longer than the crack's half-width there is such a
branch and is cut before measuring, or a 16 px wide crack would read several per cent long.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

# Half a pixel: the distance transform measures between pixel centres (see the docstring).
WIDTH_OFFSET_PX = 0.5
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


class CrackMeasurement(NamedTuple):
    """A mask's crack length and widths in pixels; the widths are None without a crack."""

    length_px: float
    width_max_px: float | None
    width_median_px: float | None

    def columns(self, gsd_mm: float | None = None) -> dict[str, float | None]:
        """The measurements, and in millimetres where the GSD is known (else None)."""
        values = {"crack_length_px": self.length_px, "crack_width_max_px": self.width_max_px,
                  "crack_width_median_px": self.width_median_px}
        for name, value in list(values.items()):
            values[name.removesuffix("_px") + "_mm"] = (
                None if gsd_mm is None or value is None else value * gsd_mm)
        return values


def _neighbour_counts(skeleton: np.ndarray) -> np.ndarray:
    kernel = np.ones((3, 3), dtype=np.uint8)
    kernel[1, 1] = 0
    return ndimage.convolve(skeleton.astype(np.uint8), kernel, mode="constant")


def skeleton_length(skeleton: np.ndarray) -> float:
    """Steps between 8-connected skeleton pixels, a diagonal sqrt(2); a diagonal that cuts
    the corner of an L of three pixels is not counted, or the corner would count twice."""
    s = skeleton
    straight = np.count_nonzero(s[:, :-1] & s[:, 1:]) + np.count_nonzero(s[:-1, :] & s[1:, :])
    down = s[:-1, :-1] & s[1:, 1:] & ~s[:-1, 1:] & ~s[1:, :-1]
    up = s[:-1, 1:] & s[1:, :-1] & ~s[:-1, :-1] & ~s[1:, 1:]
    return float(straight + math.sqrt(2) * (np.count_nonzero(down) + np.count_nonzero(up)))


def _branch_from(tip: tuple[int, int], skeleton: np.ndarray, counts: np.ndarray,
                 longest: float) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    """The pixels from ``tip`` up to the first junction, and that junction (None where the
    branch ends without one, or is longer than ``longest`` pixels)."""
    height, width = skeleton.shape
    path, current = [tip], tip
    while len(path) <= longest:
        ahead = [(current[0] + dy, current[1] + dx) for dy, dx in NEIGHBOURS
                 if 0 <= current[0] + dy < height and 0 <= current[1] + dx < width
                 and skeleton[current[0] + dy, current[1] + dx]
                 and (current[0] + dy, current[1] + dx) not in path]
        if len(ahead) != 1:
            return path, None
        current = ahead[0]
        if counts[current] >= 3:
            return path, current
        path.append(current)
    return path, None


def prune_spurs(skeleton: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """The skeleton without the branches thinning grows into a wide crack's corners: from a
    tip to a junction, no more pixels than the crack's half-width at the junction (+1)."""
    pruned = skeleton.copy()
    counts = _neighbour_counts(skeleton)
    longest = float(distance.max()) + 1
    for tip in zip(*np.nonzero(skeleton & (counts == 1))):
        path, junction = _branch_from(tip, skeleton, counts, longest)
        if junction is not None and len(path) <= distance[junction] + 1:
            for pixel in path:
                pruned[pixel] = False
    return pruned


def centre_line(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pruned skeleton of a boolean mask and the width map it is read from (twice the
    distance to the background less half a pixel, everywhere): the one definition of width
    that both a photo's measurement and the mask model's width error use."""
    distance = ndimage.distance_transform_edt(mask)
    return prune_spurs(skeletonize(mask), distance), 2 * distance - WIDTH_OFFSET_PX


def measure(mask: np.ndarray) -> CrackMeasurement:
    """The crack length and widths of a boolean mask (True = crack)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return CrackMeasurement(0.0, None, None)
    skeleton, width_map = centre_line(mask)
    widths = width_map[skeleton]
    return CrackMeasurement(skeleton_length(skeleton), float(widths.max()),
                            float(np.median(widths)))
