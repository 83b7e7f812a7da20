"""How well a crack-mask model finds crack pixels and reads widths, per source, on whole photos.

- **Pixel precision, recall and F1 with a tolerance** (2 px, the usual crack-segmentation
  measure): a predicted crack pixel is right when a true crack pixel lies within the
  tolerance (Euclidean distance transform of the truth), and a true crack pixel is found
  when a predicted one does. Hand-drawn crack masks disagree with each other by a pixel or
  two along a crack's edges; scored pixel for pixel, a prediction one pixel off a 2 px
  crack would score zero. Counts are summed over a source's photos before dividing, so a
  photo counts by its crack pixels.
- A true pixel is found at threshold ``t`` exactly when the largest probability within the
  tolerance disc around it reaches ``t``: one maximum filter per photo gives recall at every
  threshold at once, which is what choosing the threshold on validation needs.
- **Width error**: on each true centre-line pixel that the prediction finds, the width the
  predicted mask gives (at its nearest centre-line pixel) less the width the true mask
  gives there, both read by :func:`crackscan.crack_measure.centre_line` (twice the distance
  transform less half a pixel), the definition the prediction columns use.
- Photos are scored whole, at their own size: the model's tiles are stitched on the tiling
  canvas (overlaps averaged) and resized back to the photo, as a mask written for a scored
  photo is.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import cv2
import numpy as np
from scipy import ndimage

from crackscan.crack_measure import centre_line, measure
from training.mask_data import PhotoPixels

TOLERANCE_PX = 2
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.951, 0.05))


def disc(radius: float) -> np.ndarray:
    """The pixels within ``radius`` of the centre (Euclidean), as a footprint."""
    reach = int(np.floor(radius))
    y, x = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    return x * x + y * y <= radius * radius


def near(mask: np.ndarray, tolerance: float) -> np.ndarray:
    """Pixels within ``tolerance`` of a True pixel of ``mask`` (none when it has none)."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    return ndimage.distance_transform_edt(~mask) <= tolerance


@dataclasses.dataclass
class Counts:
    """Pixel counts at each threshold, summed over photos."""

    predicted: np.ndarray
    predicted_right: np.ndarray
    truth: int
    truth_found: np.ndarray
    photos: int = 0

    @classmethod
    def empty(cls, thresholds: int) -> "Counts":
        return cls(np.zeros(thresholds, np.int64), np.zeros(thresholds, np.int64), 0,
                   np.zeros(thresholds, np.int64))

    def __iadd__(self, other: "Counts") -> "Counts":
        self.predicted += other.predicted
        self.predicted_right += other.predicted_right
        self.truth += other.truth
        self.truth_found += other.truth_found
        self.photos += other.photos
        return self

    def scores(self, index: int) -> dict[str, float]:
        """Precision, recall and F1 at the ``index``-th threshold; nothing predicted is no
        false alarm (precision 1), nothing to find is nothing missed (recall 1)."""
        predicted, truth = int(self.predicted[index]), self.truth
        precision = self.predicted_right[index] / predicted if predicted else 1.0
        recall = self.truth_found[index] / truth if truth else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def photo_counts(probability: np.ndarray, truth: np.ndarray,
                 thresholds: Iterable[float] = THRESHOLDS,
                 tolerance: float = TOLERANCE_PX) -> Counts:
    """One photo's counts at every threshold (see the module's docstring)."""
    thresholds = np.asarray(list(thresholds), dtype=np.float32)[:, None]
    right_zone = near(truth, tolerance).ravel()
    reach = ndimage.maximum_filter(probability, footprint=disc(tolerance), mode="constant",
                                   cval=0.0)[truth]
    flat = probability.ravel()[None, :] >= thresholds
    return Counts(flat.sum(axis=1), (flat & right_zone).sum(axis=1), int(truth.sum()),
                  (reach[None, :] >= thresholds).sum(axis=1), 1)


def tolerance_scores(predicted: np.ndarray, truth: np.ndarray,
                     tolerance: float = TOLERANCE_PX) -> dict[str, float]:
    """Precision, recall and F1 of one binary prediction against one binary truth."""
    counts = photo_counts(predicted.astype(np.float32), truth.astype(bool), (0.5,), tolerance)
    return counts.scores(0)


def width_errors(predicted: np.ndarray, truth: np.ndarray,
                 tolerance: float = TOLERANCE_PX) -> np.ndarray:
    """Predicted less true width (px) on each true centre-line pixel the prediction finds;
    the predicted width is read at the nearest predicted centre-line pixel, if that lies
    within the tolerance plus the true half-width (else it belongs to another crack)."""
    if not predicted.any() or not truth.any():
        return np.zeros(0, np.float32)
    true_line, true_width = centre_line(truth)
    predicted_line, predicted_width = centre_line(predicted)
    if not predicted_line.any():
        return np.zeros(0, np.float32)
    distance, (rows, cols) = ndimage.distance_transform_edt(~predicted_line,
                                                            return_indices=True)
    found = true_line & near(predicted, tolerance)
    found &= distance <= tolerance + true_width / 2
    return (predicted_width[rows[found], cols[found]] - true_width[found]).astype(np.float32)


def photo_probability(predict: Callable[[np.ndarray], np.ndarray], pixels: PhotoPixels
                      ) -> np.ndarray:
    """The photo's crack probability per pixel at its own size: its tiles scored, stitched
    on the tiling canvas (overlaps averaged) and resized back to the photo."""
    plan = pixels.plan
    canvas = plan.canvas(pixels.rgb)
    tiles = np.stack([tile for _, _, tile in plan.tiles(canvas)])
    scored = np.asarray(predict(tiles), dtype=np.float32)[..., 0]
    total = np.zeros(canvas.shape[:2], np.float32)
    count = np.zeros(canvas.shape[:2], np.float32)
    size = plan.tile_size
    for (_, x0, y0), tile in zip(plan.origins(), scored):
        total[y0:y0 + size, x0:x0 + size] += tile
        count[y0:y0 + size, x0:x0 + size] += 1
    stitched = total / np.maximum(count, 1)
    if stitched.shape != (plan.height, plan.width):
        stitched = cv2.resize(stitched, (plan.width, plan.height),
                              interpolation=cv2.INTER_LINEAR)
    return stitched


@dataclasses.dataclass(frozen=True)
class ScoredPhoto:
    """A photo's crack probabilities beside its true crack mask."""

    source: str
    uri: str
    probability: np.ndarray
    truth: np.ndarray


def counts_by_source(photos: Iterable[ScoredPhoto],
                     thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, Counts]:
    totals: dict[str, Counts] = {}
    for photo in photos:
        counts = photo_counts(photo.probability, photo.truth, thresholds)
        totals.setdefault(photo.source, Counts.empty(len(thresholds)))
        totals[photo.source] += counts
    return totals


def choose_threshold(by_source: dict[str, Counts],
                     thresholds: tuple[float, ...] = THRESHOLDS) -> float:
    """The threshold with the best F1 averaged over sources (each source alike, however
    many pixels it has); ties go to the one nearest 0.5."""
    means = [np.mean([counts.scores(i)["f1"] for counts in by_source.values()])
             for i in range(len(thresholds))]
    best = max(range(len(thresholds)), key=lambda i: (round(float(means[i]), 9),
                                                       -abs(thresholds[i] - 0.5)))
    return float(thresholds[best])


def figures(photos: list[ScoredPhoto], threshold: float) -> dict[str, dict]:
    """Per source at ``threshold``: precision, recall, F1, photos, pixels and width errors
    (the median absolute and median signed error on found centre-line pixels, and the
    median absolute error of each photo's widest point, the ``crack_width_max_px`` a
    scored photo reports), and the true masks' median width: at 2 px or less the masks are
    centre lines (uav75's), and the width error measures against them, not the crack."""
    result: dict[str, dict] = {}
    for source in sorted({photo.source for photo in photos}):
        own = [photo for photo in photos if photo.source == source]
        counts = Counts.empty(1)
        errors, widest, true_widths = [], [], []
        for photo in own:
            predicted = photo.probability >= threshold
            counts += photo_counts(photo.probability, photo.truth, (threshold,))
            errors.append(width_errors(predicted, photo.truth))
            if photo.truth.any():
                line, width = centre_line(photo.truth)
                true_widths.append(width[line])
            if predicted.any() and photo.truth.any():
                widest.append(abs(measure(predicted).width_max_px
                                  - measure(photo.truth).width_max_px))
        error = np.concatenate(errors) if errors else np.zeros(0)
        result[source] = counts.scores(0) | {
            "photos": len(own),
            "crack_pixels": counts.truth,
            "predicted_pixels": int(counts.predicted[0]),
            "width_error_px": float(np.median(np.abs(error))) if error.size else None,
            "width_bias_px": float(np.median(error)) if error.size else None,
            "width_pixels_compared": int(error.size),
            "width_max_error_px": float(np.median(widest)) if widest else None,
            "true_width_median_px": (float(np.median(np.concatenate(true_widths)))
                                     if true_widths else None),
        }
    return result
