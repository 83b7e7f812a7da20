"""Soft targets from teacher models: a student learns their average at one model's cost.

Runs of the field recipe each miss the bar somewhere else (one flags formwork joints,
another misses shadowed pavement), and the average of three of them misses it on fewer
sources than any one of them. Scoring every tile with three models would triple the cost of
a survey, so a student is trained towards the average instead (knowledge distillation,
Hinton et al. 2015): its target for a window is a blend of the window's label and the
teachers' mean crack probability, which also tells it how sure to be on ambiguous windows.

Teachers are exported model folders, run with LiteRT as the scorer runs them, on the
training windows before augmentation: a window keeps its target under every augmented view.
A teacher may also be asked for its mean over the eight flips and quarter turns of a window:
a crack is one at any orientation, and the mean ranks the hard drone windows better than one
look does (for the model shipped until 2026-12-06, ROC AUC on uavcrack's test windows 0.919
in one view, 0.961 over eight), at eight times the teachers' cost.

That cost (about ten minutes for the field set over eight views on two cores) is paid once:
the scores are kept beside the data set, in ``teacher-scores/``, keyed by the window's
sha256 under a file named for the teacher's LiteRT sha256 and the views. The keys are the
windows' contents, so a rebuilt or grown data set reuses every window it still holds and
only new windows are scored.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import sys
import time

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from crackscan.model_card import TFLITE_FILE, ModelCard, ModelCardError
from crackscan.tflite_model import TFLiteClassifier
from training import input_pipeline, orientations

log = logging.getLogger("crackscan.teachers")

VIEWS = (1, 8)
CACHE_DIR = "teacher-scores"


def views_of(images: np.ndarray, views: int) -> list[np.ndarray]:
    """A batch (batch, height, width, channels) as it is, or in all eight orientations of a
    square: four quarter turns of it and of its mirror image."""
    if views == 1:
        return [images]
    return [np.ascontiguousarray(view) for view in orientations.eight(images, axes=(1, 2))]


def read(model_dir: str) -> ModelCard:
    """The teacher's card, checked against its files as the scorer checks a model; a folder
    that is not an exported model, or lists no LiteRT file, is refused by name."""
    try:
        spec = ModelCard.read(model_dir)
    except ModelCardError as exc:
        raise input_pipeline.DataError(f"teacher {model_dir}: {exc}") from None
    if spec.tflite_uri is None:
        raise input_pipeline.DataError(f"teacher {model_dir}: no {TFLITE_FILE}; pass an "
                                       f"exported model folder")
    return spec


def cache_path(data_dir: str, tflite_sha256: str, views: int) -> str:
    return posixpath.join(data_dir, CACHE_DIR, f"{tflite_sha256}-{views}-views.json")


def _read_cache(path: str) -> dict[str, float]:
    """A teacher's kept scores; one that cannot be read is scored again, not trusted."""
    if not tf.io.gfile.exists(path):
        return {}
    try:
        with tf.io.gfile.GFile(path, "r") as handle:
            scores = json.load(handle)
        return {str(sha): float(p) for sha, p in scores.items()}
    except (ValueError, AttributeError, TypeError, tf.errors.OpError) as exc:
        log.warning("teacher scores %s: unreadable (%s); scoring again", path, exc)
        return {}


def _write_cache(path: str, scores: dict[str, float]) -> None:
    """Written whole and then renamed, so that a run stopped mid-write leaves the previous
    file; a data set on a read-only path only loses the saving, not the run."""
    try:
        tf.io.gfile.makedirs(posixpath.dirname(path))
        with tf.io.gfile.GFile(path + ".partial", "w") as handle:
            json.dump(scores, handle)
        tf.io.gfile.rename(path + ".partial", path, overwrite=True)
    except tf.errors.OpError as exc:
        log.warning("teacher scores %s: not kept (%s)", path, exc)


def _score(spec: ModelCard, data_dir: str, batch_size: int, threads: int | None, views: int,
           kept: dict[str, float], new: int) -> dict[str, float]:
    """The teacher's crack probability of each training window not in ``kept``, fed at the
    teacher's own input size; the split is decoded whole, the model runs on the new ones only."""
    with tf.io.gfile.GFile(spec.tflite_uri, "rb") as handle:
        teacher = TFLiteClassifier(handle.read(), threads or os.cpu_count() or 1)
    windows = input_pipeline.dataset(data_dir, "train", teacher.input_shape[1], batch_size,
                                     with_meta=True)
    scores: dict[str, float] = {}
    with tqdm(total=new, desc=f"teacher {spec.tflite_uri}", unit=" windows", disable=None,
              file=sys.stderr) as progress:
        for images, _, meta in windows:
            hashes = [h.decode() for h in meta["sha256"].numpy()]
            rows = [i for i, sha in enumerate(hashes) if sha not in kept and sha not in scores]
            if not rows:
                continue
            crack = np.mean([teacher.predict(view)[:, spec.positive_index]
                             for view in views_of(images.numpy()[rows], views)], axis=0)
            scores.update((hashes[i], float(p)) for i, p in zip(rows, crack))
            progress.update(len(rows))
    return scores


def crack_probabilities(data_dir: str, model_dirs: list[str], batch_size: int = 64,
                        threads: int | None = None, views: int = 1
                        ) -> tuple[dict[str, float], list[dict]]:
    """The teachers' mean crack probability of every labelled training window, by the
    window's sha256, each teacher fed at its own input size and averaged over ``views``
    orientations of the window (:func:`views_of`); and each teacher's folder with the
    sha256 of the file that scored, for the student's card. The hash is taken when the
    teacher is read, not at export: a folder such as the shipped model's may be replaced by
    the next model while the student trains. Windows found in the teacher's kept scores
    (:func:`cache_path`) are not scored again."""
    if views not in VIEWS:
        raise ValueError(f"views: expected one of {VIEWS}, got {views}")
    hashes = input_pipeline.window_hashes(data_dir, "train")
    mean: dict[str, float] = {}
    taught_by: list[dict] = []
    for number, model_dir in enumerate(model_dirs, 1):
        spec = read(model_dir)
        taught_by.append({"model": model_dir, "tflite_sha256": spec.tflite_sha256})
        kept_at = cache_path(data_dir, spec.tflite_sha256, views)
        kept = _read_cache(kept_at)
        new = len(set(hashes) - set(kept))
        started = time.monotonic()
        # A log line as well as the bar: a training run is often left to a log file, where
        # the bar is off and minutes would otherwise pass without a word.
        log.info("teacher %d of %d (%s): %d training windows, %d to score in %d view(s), "
                 "the others kept in %s", number, len(model_dirs), model_dir, len(hashes),
                 new, views, kept_at)
        if new:
            kept.update(_score(spec, data_dir, batch_size, threads, views, kept, new))
            _write_cache(kept_at, kept)
        for sha in hashes:
            mean[sha] = mean.get(sha, 0.0) + kept[sha] / len(model_dirs)
        log.info("teacher %d of %d: %d windows scored, %d from kept scores, in %.0f s", number,
                 len(model_dirs), new, len(hashes) - new, time.monotonic() - started)
    log.info("teachers: %d training windows, mean crack probability %.3f", len(mean),
             float(np.mean(list(mean.values()))) if mean else float("nan"))
    return mean, taught_by
