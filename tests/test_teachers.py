"""Distillation: teachers' crack probabilities become a student's training targets."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pipeline.inference import SHIPPED_MODEL_DIR
from training import input_pipeline, teachers

SHIPPED = Path(SHIPPED_MODEL_DIR)


def train_labels(data_dir: Path) -> dict[str, int]:
    return {sha.decode(): int(label)
            for _, labels, meta in input_pipeline.dataset(str(data_dir), "train", 32, 64,
                                                          with_meta=True)
            for sha, label in zip(meta["sha256"].numpy(), labels.numpy())}


def test_teachers_score_every_training_window_under_its_own_key(fixture_dataset, caplog):
    """The shipped model as teacher: its probabilities, looked up by window, agree with the
    labels of the real lab patches as its card says they should; misplaced keys would agree
    about half the time."""
    labels = train_labels(fixture_dataset)
    with caplog.at_level(logging.INFO, logger="crackscan.teachers"):
        taught, _ = teachers.crack_probabilities(str(fixture_dataset), [str(SHIPPED)])
    assert f"teacher 1 of 1 ({SHIPPED}): {len(labels)} training windows" in caplog.text
    assert set(taught) == set(labels)
    threshold = json.loads((SHIPPED / "model_card.json").read_text())["threshold"]
    agree = np.mean([(taught[sha] >= threshold) == bool(label) for sha, label in labels.items()])
    assert agree >= 0.95
    twice, _ = teachers.crack_probabilities(str(fixture_dataset), [str(SHIPPED)] * 2, threads=1)
    np.testing.assert_allclose([twice[sha] for sha in labels], [taught[sha] for sha in labels],
                               atol=1e-6)


def test_teacher_scores_are_kept_beside_the_data_and_only_new_windows_scored(
        fixture_dataset, tmp_path, caplog):
    """A kept score is used as it is (a planted value comes back), a window missing from
    the file is scored and added, and an unreadable file is scored again with a warning."""
    data = tmp_path / "data"
    shutil.copytree(fixture_dataset, data, ignore=shutil.ignore_patterns(teachers.CACHE_DIR))
    first, taught_by = teachers.crack_probabilities(str(data), [str(SHIPPED)])
    kept = Path(teachers.cache_path(str(data), taught_by[0]["tflite_sha256"], 1))
    assert kept.parent == data / teachers.CACHE_DIR
    assert json.loads(kept.read_text()) == first

    scores = json.loads(kept.read_text())
    planted, *dropped = sorted(scores)[:4]
    scores[planted] = 0.123
    for sha in dropped:
        del scores[sha]
    kept.write_text(json.dumps(scores))
    with caplog.at_level(logging.INFO, logger="crackscan.teachers"):
        again, _ = teachers.crack_probabilities(str(data), [str(SHIPPED)])
    assert f"3 windows scored, {len(first) - 3} from kept scores" in caplog.text
    assert again[planted] == 0.123
    np.testing.assert_allclose([again[sha] for sha in dropped],
                               [first[sha] for sha in dropped], atol=1e-6)
    assert set(json.loads(kept.read_text())) == set(first)

    assert not Path(teachers.cache_path(str(data), taught_by[0]["tflite_sha256"], 8)).exists()
    kept.write_text("{not json")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="crackscan.teachers"):
        rescored, _ = teachers.crack_probabilities(str(data), [str(SHIPPED)])
    assert "unreadable" in caplog.text and f"{len(first)} windows scored, 0 from" in caplog.text
    np.testing.assert_allclose([rescored[sha] for sha in first], list(first.values()),
                               atol=1e-6)


def test_eight_views_are_every_orientation_of_a_window():
    """Turning the window turns its views among themselves, so their mean cannot depend on
    which way up the drone held the camera."""
    batch = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    views = teachers.views_of(batch, 8)
    keys = {view.tobytes() for view in views}
    assert len(keys) == 8 and batch.tobytes() in keys
    turned = np.rot90(batch, 1, axes=(1, 2))
    assert {view.tobytes() for view in teachers.views_of(turned, 8)} == keys
    assert {view.tobytes() for view in teachers.views_of(batch[:, ::-1], 8)} == keys
    assert [view.tobytes() for view in teachers.views_of(batch, 1)] == [batch.tobytes()]


def test_a_teacher_over_eight_views_still_knows_the_lab_patches(fixture_dataset):
    labels = train_labels(fixture_dataset)
    one, _ = teachers.crack_probabilities(str(fixture_dataset), [str(SHIPPED)])
    eight, _ = teachers.crack_probabilities(str(fixture_dataset), [str(SHIPPED)], views=8)
    assert set(eight) == set(labels)
    threshold = json.loads((SHIPPED / "model_card.json").read_text())["threshold"]
    agree = np.mean([(eight[sha] >= threshold) == bool(label) for sha, label in labels.items()])
    assert agree >= 0.95
    shift = np.array([eight[sha] - one[sha] for sha in labels])
    assert 0 < np.abs(shift).max() < 0.5


def test_student_targets_blend_label_and_teachers(fixture_dataset):
    taught = {sha: 0.2 for sha in train_labels(fixture_dataset)}
    _, targets = next(iter(input_pipeline.dataset(
        str(fixture_dataset), "train", 32, 32, training=True, seed=0, teacher=taught,
        teacher_weight=0.25)))
    crack = targets.numpy()[:, 1]
    np.testing.assert_allclose(targets.numpy().sum(axis=1), 1.0, atol=1e-6)
    # 0.75 x label + 0.25 x 0.2, for both classes of a balanced batch
    np.testing.assert_allclose(np.unique(np.round(crack, 5)), [0.05, 0.8], atol=1e-5)


def test_a_training_window_the_teachers_did_not_score_is_refused(fixture_dataset):
    taught = dict(list({sha: 0.5 for sha in train_labels(fixture_dataset)}.items())[1:])
    batches = input_pipeline.dataset(str(fixture_dataset), "train", 32, 32, training=True,
                                     seed=0, teacher=taught)
    with pytest.raises(tf.errors.InvalidArgumentError, match="teachers did not score"):
        for _ in batches.take(8):
            pass


def test_a_teacher_folder_without_a_litert_file_is_named(fixture_dataset, tiny_model_dir,
                                                         tmp_path):
    """A Keras-only model folder has no file for LiteRT; an empty folder is no model."""
    from training import train

    def refusal(folder: Path) -> str:
        with pytest.raises(SystemExit) as exited:
            train.main(["--data", str(fixture_dataset), "--output", str(tmp_path / "out"),
                        "--weights", "none", "--teacher", str(folder)])
        return str(exited.value.code)

    assert f"teacher {tiny_model_dir}: no model.tflite" in refusal(tiny_model_dir)
    assert f"teacher {tmp_path}: " in refusal(tmp_path)
    assert "model_card.json is missing" in refusal(tmp_path)

