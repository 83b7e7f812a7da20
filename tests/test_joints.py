"""Straight joints drawn into training windows: look-alikes that leave the label alone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import input_pipeline
from training.joints import RandomJoints


def flat(count: int, side: int = 96, value: float = 128.0) -> np.ndarray:
    return np.full((count, side, side, 3), value, np.float32)


def test_joints_are_straight_darker_grooves_that_cross_the_window():
    drawn = np.asarray(RandomJoints(1.0, grid_rate=0.0, seed=1)(flat(16, side=224),
                                                                 training=True))
    for image in drawn[..., 0]:
        darker = image < 127.5
        assert 0 < darker.mean() < 0.5  # thin grooves, most of the surface untouched
        assert image.min() <= 128 * (1 - 0.15) + 1e-3 and image.max() <= 255
        rows, cols = np.nonzero(image < image.min() + 1e-3)  # the grooves' darkest lines
        # Parallel straight lines: seen across the best angle, the darkest pixels fall into
        # a few narrow bands (a groove's width), far apart (the joints' spacing).
        angles = np.linspace(0, np.pi, 720, endpoint=False)
        across = [np.unique(np.round(cols * np.cos(a) + rows * np.sin(a))) for a in angles]
        bands = np.split(best := min(across, key=len), np.nonzero(np.diff(best) > 1)[0] + 1)
        assert all(band[-1] - band[0] <= 9 for band in bands), bands
        assert all(b[0] - a[-1] >= 30 for a, b in zip(bands, bands[1:])), bands


def test_joints_only_in_training_and_only_in_the_asked_share():
    images = flat(300, side=224)
    np.testing.assert_array_equal(RandomJoints(1.0, seed=1)(images, training=False), images)
    np.testing.assert_array_equal(RandomJoints(0.0, seed=1)(images, training=True), images)
    changed = np.any(np.asarray(RandomJoints(0.3, seed=1)(images, training=True)) != images,
                     axis=(1, 2, 3))
    assert 0.22 < changed.mean() < 0.38


def test_joints_repeat_for_a_seed(fixture_concrete_dir: Path):
    image = np.asarray(Image.open(next(fixture_concrete_dir.rglob("*.jpg"))).convert("RGB")
                       .resize((64, 64)), np.float32)[None].repeat(4, axis=0)
    first = np.asarray(RandomJoints(1.0, seed=7)(image, training=True))
    again = np.asarray(RandomJoints(1.0, seed=7)(image, training=True))
    other = np.asarray(RandomJoints(1.0, seed=8)(image, training=True))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_rate_outside_0_to_1_is_refused():
    with pytest.raises(ValueError, match="must lie in 0-1"):
        RandomJoints(1.5)


def test_training_batches_keep_their_labels_under_joints(fixture_dataset):
    """The same seed samples the same windows with and without joints: only pixels move."""
    def first_batch(rate: float):
        images, labels = next(iter(input_pipeline.dataset(
            str(fixture_dataset), "train", 64, 16, training=True, seed=5, joint_rate=rate)))
        return images.numpy(), labels.numpy()

    plain_images, plain_labels = first_batch(0.0)
    joint_images, joint_labels = first_batch(1.0)
    np.testing.assert_array_equal(joint_labels, plain_labels)
    assert not np.allclose(joint_images, plain_images)
