"""The flip cascade: one pass a tile, and the flip average only where one pass is unsure.

A flip average (the tile, its mirror images and its half turn, averaged) ranks a drone
photo's cracks better than one pass, at four passes a tile; most tiles of a survey are far
from any threshold, and more views cannot change their verdicts. The cascade scores every
tile once and re-scores with the other views only the tiles whose first probability lies in
the card's band, chosen on validation so that it holds the tile and photo thresholds and
almost every tile whose verdict the full average would change
(:func:`training.evaluate.choose_cascade_band`). A tile in the band gets exactly the full
average; one outside keeps its one-pass probability.

Training evaluates the cascade with :func:`combine` on both sets of probabilities; scorers
run it with :func:`crack_probabilities`; both give the same number for a tile.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

# Which views of an image a flip average scores: the image axes each view flips, of
# (batch, rows, columns, channels). "flips" adds the upside-down image and the half turn.
FLIP_VIEWS = {"mirror": ((), (2,)), "flips": ((), (2,), (1,), (1, 2))}


@dataclasses.dataclass(frozen=True)
class Cascade:
    """The card's ``cascade``: which views, and the band of one-pass probabilities (both
    ends included) re-scored with them."""

    views: str
    low: float
    high: float

    @classmethod
    def from_card(cls, field: Any, where: str) -> "Cascade":
        """The card's field, refused with ``where`` named when it could not be run."""
        if (not isinstance(field, dict) or field.get("views") not in FLIP_VIEWS
                or not all(isinstance(field.get(end), (int, float))
                           and not isinstance(field.get(end), bool) for end in ("low", "high"))
                or not 0.0 <= field["low"] <= field["high"] <= 1.0):
            raise ValueError(f"{where}: cascade must be {{'views': one of "
                             f"{sorted(FLIP_VIEWS)}, 'low': p, 'high': p}} with "
                             f"0 <= low <= high <= 1, got {field!r:.120}")
        return cls(field["views"], float(field["low"]), float(field["high"]))

    def unsure(self, one_pass: np.ndarray) -> np.ndarray:
        return (one_pass >= self.low) & (one_pass <= self.high)


def other_views(tile: np.ndarray, views: str) -> np.ndarray:
    """The tile's views after the first (the tile itself), stacked: ``(views - 1, h, w, c)``."""
    return np.stack([np.flip(tile, axis=tuple(axis - 1 for axis in axes))
                     for axes in FLIP_VIEWS[views][1:]])


def combine(one_pass: np.ndarray, averaged: np.ndarray, cascade: Cascade) -> np.ndarray:
    """The cascade's probabilities from both forms' probabilities of the same tiles."""
    return np.where(cascade.unsure(one_pass), averaged, one_pass)


def crack_probabilities(predict: Callable[[Any], np.ndarray], tiles: Any, positive_index: int,
                        cascade: Cascade | None,
                        predict_views: Callable[[np.ndarray], np.ndarray] | None = None
                        ) -> tuple[np.ndarray, int]:
    """Each tile's crack probability as a card with ``cascade`` (or None) defines it, and how
    many tiles were re-scored in their other views. ``predict`` maps a batch of tiles to
    class probabilities; ``predict_views`` (default ``predict``) one tile's other views.

    One views call per unsure tile, always of the same shape: a LiteRT interpreter re-plans
    every tensor when its batch changes, which would cost more than the views."""
    result = np.asarray(predict(tiles))[:, positive_index].astype(np.float64)
    if cascade is None:
        return result, 0
    unsure = np.flatnonzero(cascade.unsure(result))
    for index in unsure:
        views = np.asarray((predict_views or predict)(
            other_views(np.asarray(tiles[index]), cascade.views)))[:, positive_index]
        result[index] = (result[index] + float(np.sum(views))) / (len(views) + 1)
    return result, len(unsure)
