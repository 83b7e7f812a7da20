"""The eight orientations of a square picture: four quarter turns of it and of its mirror
image. A crack, and a photo exported turned or mirrored, is the same at any of them; the
near-copy hash and the teachers both look at all eight, in this one order."""
from __future__ import annotations

import numpy as np


def eight(array: np.ndarray, axes: tuple[int, int] = (0, 1)) -> list[np.ndarray]:
    """``array`` turned in the plane of ``axes`` (rows, columns), then its left-right mirror
    image turned likewise; views into ``array``, not copies."""
    mirrored = np.flip(array, axis=axes[1])
    return [np.rot90(image, turns, axes=axes) for image in (array, mirrored)
            for turns in range(4)]
