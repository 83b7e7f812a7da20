"""Test-split evaluation and the choice of the decision threshold.

The threshold is chosen on the validation split, never on test: the value in [0, 1] that
maximises F1 for the crack class there, ties broken towards 0.5 (on clean data many
thresholds separate the classes perfectly; the one nearest 0.5 is the least surprising).
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

POSITIVE = 1


@dataclass
class Predictions:
    """Crack probabilities of one split with their labels and provenance."""

    probabilities: np.ndarray
    labels: np.ndarray
    sources: list[str]
    sha256: list[str]


def predict(model: keras.Model, ds: tf.data.Dataset) -> Predictions:
    """Probabilities for a ``with_meta`` data set, batch by batch (bounded memory)."""
    probabilities, labels, names, hashes = [], [], [], []
    for images, batch_labels, (batch_sources, batch_hashes) in ds:
        probabilities.append(model.predict_on_batch(images)[:, POSITIVE])
        labels.append(batch_labels.numpy())
        names += [s.decode() for s in batch_sources.numpy()]
        hashes += [h.decode() for h in batch_hashes.numpy()]
    return Predictions(np.concatenate(probabilities).astype(np.float64),
                       np.concatenate(labels).astype(np.int64), names, hashes)


def f1_at(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    predicted = probabilities >= threshold
    tp = np.sum(predicted & (labels == POSITIVE))
    fp = np.sum(predicted & (labels != POSITIVE))
    fn = np.sum(~predicted & (labels == POSITIVE))
    return float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0


def choose_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Max-F1 threshold on validation; candidates are midpoints between sorted scores."""
    scores = np.unique(np.concatenate([probabilities, [0.0, 1.0]]))
    candidates = np.unique(np.concatenate([(scores[:-1] + scores[1:]) / 2, [0.5]]))
    f1 = np.array([f1_at(probabilities, labels, t) for t in candidates])
    best = candidates[np.isclose(f1, f1.max())]
    return float(best[np.argmin(np.abs(best - 0.5))])


def metrics(predictions: Predictions, threshold: float) -> dict:
    """Accuracy, precision, recall, F1, ROC AUC and the confusion matrix at ``threshold``."""
    labels, probabilities = predictions.labels, predictions.probabilities
    predicted = (probabilities >= threshold).astype(np.int64)
    matrix = tf.math.confusion_matrix(labels, predicted, num_classes=2).numpy()
    tn, fp, fn, tp = (int(v) for v in matrix.ravel())
    auc = keras.metrics.AUC(num_thresholds=10_001)
    auc.update_state(labels, probabilities)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "threshold": threshold,
        "accuracy": (tp + tn) / len(labels),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": float(auc.result()),
        "confusion_matrix": {"labels": ["Negative", "Positive"],
                             "rows_true_columns_predicted": matrix.tolist()},
        "counts": {"total": int(len(labels)), "positive": int(tp + fn),
                   "negative": int(tn + fp), "errors": int(fp + fn)},
    }
