"""From tile probabilities to one photo's crack probability: the rule training chooses and
scoring applies, written once so the two cannot drift apart."""
from __future__ import annotations

from typing import Sequence


def photo_probability(tile_probabilities: Sequence[float], tiles_needed: int) -> float:
    """The ``tiles_needed``-th highest tile probability (the lowest when the photo has fewer
    tiles). At a threshold, a photo is Positive exactly when that many of its tiles reach
    it: one tile's false alarm among hundreds does not flag a survey photo, and the label
    still follows from one number in the row."""
    ranked = sorted(tile_probabilities, reverse=True)
    return float(ranked[min(tiles_needed, len(ranked)) - 1])
