"""Straight joints drawn into training windows: look-alikes that leave the label alone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import input_pipeline
from training.joints import RandomJoints, running_bond


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


def test_joints_are_drawn_only_into_eligible_images():
    images = flat(64, side=224)
    eligible = np.arange(64) % 2
    drawn = np.asarray(RandomJoints(1.0, seed=3)(images, training=True, eligible=eligible))
    changed = np.any(drawn != images, axis=(1, 2, 3))
    np.testing.assert_array_equal(changed, eligible.astype(bool))


def test_a_running_bond_staggers_the_cross_joints_from_course_to_course():
    """Brickwork: bed joints along rows 50 px apart, cross joints 120 px apart; in a bond the
    cross joints of one course sit half a brick (60 px) from those of the next."""
    rows = np.arange(200, dtype=np.float32).reshape(1, -1, 1)
    cols = np.arange(240, dtype=np.float32).reshape(1, 1, -1)
    angle = np.full((1, 1, 1), np.pi / 2, np.float32)  # bed joints run along the rows

    def cross_joint_centres(bonded: float) -> np.ndarray:
        offset = running_bond(rows, cols, angle, 50.0, 0.0, 10.0, 120.0, bonded)
        groove, _ = RandomJoints._grooves(None, rows, cols, angle + np.pi / 2, 120.0,
                                          offset, 4.0, 0.5, 0.0)
        groove = np.asarray(groove)[0]
        centres = []
        for row in (25, 75, 125):  # the middle of three courses
            dark = np.nonzero(groove[row] > 0.5)[0]
            centres.append([run.mean() for run in np.split(dark, np.nonzero(
                np.diff(dark) > 1)[0] + 1)])
        return np.array(centres)

    square, bonded = cross_joint_centres(0.0), cross_joint_centres(1.0)
    np.testing.assert_allclose(square, [[110, 230]] * 3, atol=1)
    np.testing.assert_allclose(bonded, [[110, 230], [50, 170], [110, 230]], atol=1)


def test_intact_only_joints_leave_cracked_windows_untouched(fixture_dataset):
    """The same seed samples the same windows: with joints drawn into intact windows only,
    every cracked window of the batch is exactly as without joints, and intact ones change."""
    def first_batch(joints_into: str):
        images, labels = next(iter(input_pipeline.dataset(
            str(fixture_dataset), "train", 224, 16, training=True, seed=5, joint_rate=1.0,
            joints_into=joints_into)))
        return images.numpy(), labels.numpy()

    plain_images, plain_labels = next(iter(input_pipeline.dataset(
        str(fixture_dataset), "train", 224, 16, training=True, seed=5)))
    images, labels = first_batch("intact")
    np.testing.assert_array_equal(labels, plain_labels.numpy())
    cracked = labels == 1
    assert cracked.any() and (~cracked).any()
    np.testing.assert_allclose(images[cracked], plain_images.numpy()[cracked], atol=1e-4)
    changed = np.any(np.abs(images - plain_images.numpy()) > 1e-3, axis=(1, 2, 3))
    assert changed[~cracked].all()
    with pytest.raises(ValueError, match="joints_into"):
        input_pipeline.augmenter(1, 0.3, "cracked")
