"""Find near-copies of photos by content, so a split can keep them on one side.

Augmented exports (Roboflow and the like) hold several copies of one photo: flipped,
rotated, re-compressed, brightened. Split by file, one copy trains and another tests, and
the test measures memory instead of generalisation. File names and sidecar manifests cannot
be relied on in a user's data, so copies are found from the pixels: a DCT perceptual hash
(pHash: the signs of the lowest 8x8 frequencies of a 32x32 greyscale thumbnail against
their median) under all eight flips and quarter turns, and photos whose hashes lie within
``max_distance`` bits are joined into one group, transitively.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from training import orientations

HASH_SIDE, LOW_FREQUENCIES = 32, 8
# Re-encoding (JPEG 85) moves a pHash by 0-2 bits, a 5% brightness change by up to 2 more;
# two unrelated photos differ in about half of its 64 bits. On the shared sources (7,583
# photos) 4 bits join 189 pairs into groups of at most 13 photos; 6 bits chain low-texture
# walls into one group of 263. Stronger edits (+15% brightness with clipped highlights:
# 8 bits) are not caught: the manifest's group column covers what is known of those.
DEFAULT_MAX_DISTANCE = 4


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT = _dct_matrix(HASH_SIDE)
_BITS = (1 << np.arange(LOW_FREQUENCIES * LOW_FREQUENCIES, dtype=np.uint64)).astype(np.uint64)


def _hash(grey: np.ndarray) -> np.uint64:
    low = (_DCT @ grey @ _DCT.T)[:LOW_FREQUENCIES, :LOW_FREQUENCIES].ravel()
    return np.uint64(np.sum(_BITS[low > np.median(low[1:])], dtype=np.uint64))


def perceptual_hashes(rgb: np.ndarray) -> np.ndarray:
    """The pHash of the photo under each of the 8 flips and quarter turns, as uint64[8]."""
    thumbnail = Image.fromarray(rgb).convert("L").resize((HASH_SIDE, HASH_SIDE),
                                                        Image.Resampling.BILINEAR)
    grey = np.asarray(thumbnail, dtype=np.float64)
    return np.array([_hash(v) for v in orientations.eight(grey)], dtype=np.uint64)


class _Groups:
    """Union-find over indices; each group is named by its smallest member."""

    def __init__(self, size: int) -> None:
        self._parent = list(range(size))

    def find(self, index: int) -> int:
        while self._parent[index] != index:
            self._parent[index] = self._parent[self._parent[index]]
            index = self._parent[index]
        return index

    def join(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self._parent[max(a, b)] = min(a, b)


def near_copy_groups(hashes: np.ndarray, linked: list[tuple[int, int]] = (),
                     max_distance: int = DEFAULT_MAX_DISTANCE,
                     chunk: int = 512) -> tuple[list[int], int]:
    """Group of every photo (the index of its group's first photo) and the number of
    near-copy pairs found.

    ``hashes`` is ``uint64[n, 8]`` from :func:`perceptual_hashes`; ``linked`` are pairs
    already known to belong together (a manifest's groups), joined as well. Each photo's
    plain hash is compared with every variant of every other photo's, in chunks, so the
    memory stays at ``chunk x n x 8`` words.
    """
    count = len(hashes)
    groups = _Groups(count)
    for a, b in linked:
        groups.join(a, b)
    pairs: set[tuple[int, int]] = set()
    plain = hashes[:, 0]
    for start in range(0, count, chunk):
        block = plain[start:start + chunk]
        distance = np.bitwise_count(block[:, None, None] ^ hashes[None, :, :]).min(axis=2)
        for i, j in zip(*np.nonzero(distance <= max_distance)):
            a, b = start + int(i), int(j)
            if a != b:
                pairs.add((min(a, b), max(a, b)))
    for a, b in pairs:
        groups.join(a, b)
    return [groups.find(i) for i in range(count)], len(pairs)
