"""The int8 model's gate: it ships only if, on every source's test windows, it scores as
the float model does.

An overall accuracy hides what matters here: 9 verdicts flipped out of 2,000 looked like
0.45% but could all fall on one small field source. So the gate is per source, against the
float file the int8 one would replace (both run by LiteRT on the same images, at the card's
threshold): accuracy may drop by less than ``max_accuracy_loss`` and fewer than
``max_flip_rate`` of the verdicts may change. On a source of a few hundred windows that
means no flip at all.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from crackscan.tflite_model import TFLiteClassifier
from training import input_pipeline

MAX_ACCURACY_LOSS = 0.001  # 0.1 percentage point
MAX_FLIP_RATE = 0.002  # 0.2% of a source's verdicts


@dataclasses.dataclass(frozen=True)
class GateLimits:
    """What the int8 model may lose against the float one, on every source."""

    max_accuracy_loss: float = MAX_ACCURACY_LOSS
    max_flip_rate: float = MAX_FLIP_RATE


@dataclasses.dataclass(frozen=True)
class SplitScores:
    """Positive-class probabilities of several models on one split's labelled windows."""

    labels: np.ndarray
    sources: np.ndarray
    probabilities: dict[str, np.ndarray]


def split_scores(models: dict[str, bytes], data_dir: str, split: str, tile_size: int,
                 positive: int, batch_size: int = 32) -> SplitScores:
    """Every model's probabilities on the split's labelled windows, each batch decoded once
    and fed to all of them, resized to the tile size their LiteRT input takes (float 0-255,
    as the evaluation feeds Keras)."""
    threads = os.cpu_count() or 1
    classifiers = {name: TFLiteClassifier(content, threads) for name, content in models.items()}
    labels, sources = [], []
    probabilities: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for images, batch_labels, meta in input_pipeline.dataset(
            data_dir, split, tile_size, batch_size, with_meta=True):
        pixels = images.numpy()
        for name, classifier in classifiers.items():
            probabilities[name].append(classifier.predict(pixels)[:, positive])
        labels.append(batch_labels.numpy())
        sources += [source.decode() for source in meta["source"].numpy()]
    if not labels:
        raise input_pipeline.DataError(f"{data_dir}: the {split} split holds no labelled "
                                       f"window to measure the int8 model on")
    return SplitScores(np.concatenate(labels), np.array(sources),
                       {name: np.concatenate(p).astype(np.float64)
                        for name, p in probabilities.items()})


def _accuracy(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return float(np.mean((probabilities >= threshold) == labels))


def source_figures(labels: np.ndarray, float_scores: np.ndarray, int8_scores: np.ndarray,
                   threshold: float, limits: GateLimits) -> dict:
    """One source's float and int8 accuracy, verdict flips, and whether they pass."""
    float_accuracy = _accuracy(float_scores, labels, threshold)
    int8_accuracy = _accuracy(int8_scores, labels, threshold)
    flips = int(np.sum((float_scores >= threshold) != (int8_scores >= threshold)))
    flip_rate = flips / len(labels)
    return {"examples": int(len(labels)), "float_accuracy": float_accuracy,
            "int8_accuracy": int8_accuracy,
            "accuracy_loss": float_accuracy - int8_accuracy, "flips": flips,
            "flip_rate": flip_rate,
            "passed": bool(float_accuracy - int8_accuracy < limits.max_accuracy_loss
                           and flip_rate < limits.max_flip_rate)}


def gate(scores: SplitScores, float_name: str, int8_name: str, threshold: float,
         limits: GateLimits = GateLimits(), split: str = "test") -> dict:
    """The gate's figures per source and overall; ``passed`` only if every source passed."""
    float_scores, int8_scores = scores.probabilities[float_name], scores.probabilities[int8_name]
    by_source = {}
    for source in sorted(set(scores.sources.tolist())):
        mine = scores.sources == source
        by_source[source] = source_figures(scores.labels[mine], float_scores[mine],
                                           int8_scores[mine], threshold, limits)
    overall = source_figures(scores.labels, float_scores, int8_scores, threshold, limits)
    return {
        "passed": all(figures["passed"] for figures in by_source.values()),
        "rule": f"on every source's {split} windows, at the float model's threshold: int8 "
                f"accuracy less than {limits.max_accuracy_loss * 100:g} point below the float "
                f"file's, and fewer than {limits.max_flip_rate:.1%} of the float file's "
                f"verdicts flipped",
        "split": split, "threshold": threshold,
        "max_accuracy_loss": limits.max_accuracy_loss, "max_flip_rate": limits.max_flip_rate,
        "by_source": by_source,
        "all": {key: value for key, value in overall.items() if key != "passed"},
        "max_abs_diff": float(np.max(np.abs(int8_scores - float_scores))),
    }


def failing_sources(report: dict) -> Sequence[str]:
    return [name for name, figures in report["by_source"].items() if not figures["passed"]]
