"""Injected faults inside model batches: retried or failed per image, never lost or doubled.

The pipeline batches 32 tiles per model call. A fault in one call must not take the other
tiles of that batch down with it: a transient one is retried tile by tile and every tile is
scored once; a tile the model fails on even alone fails its own image only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import apache_beam as beam
import keras
import numpy as np
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import assert_that, equal_to, is_empty
from PIL import Image

from crackscan.decode import decode_rgb
from crackscan.model_card import ModelCard
from pipeline.inference import FAILED, SCORES, KerasTileModelHandler, ScoreTiles
from pipeline.records import TileKey
from scoring_helpers import concrete, read_jsonl, read_predictions, save_model, score, tiny_model

BATCH = 32
TOLERANCE = 1e-5  # float32 noise between batch compositions, and six written decimals


@keras.saving.register_keras_serializable(package="crackscan_tests")
class PoisonGuard(keras.layers.Layer):
    """Makes the model itself fail on any batch holding a pure magenta pixel."""

    def call(self, x):
        magenta = tf.reduce_all(tf.equal(x, tf.constant([255.0, 0.0, 255.0])), axis=-1)
        tf.debugging.assert_equal(tf.reduce_any(magenta), False,
                                  message="poisoned tile: pure magenta pixels")
        return x


class FlakyKerasHandler(KerasTileModelHandler):
    """The real Keras handler whose first ``failures`` model calls raise, as a worker
    losing a call mid-batch would (a dropped accelerator, an interrupted read)."""

    def __init__(self, spec: ModelCard, batch_size: int, failures: int) -> None:
        super().__init__(spec, batch_size)
        self._failures = failures

    def predict(self, model: Any, tiles: Sequence[np.ndarray]) -> np.ndarray:
        if self._failures > 0:
            self._failures -= 1
            raise RuntimeError("injected fault: worker lost the model call")
        return super().predict(model, tiles)


def without_time(rows: dict[str, dict]) -> dict[str, dict]:
    return {uri: {k: v for k, v in row.items() if k != "scored_at"} for uri, row in rows.items()}


def test_a_poisoned_tile_fails_only_its_own_image(tmp_path: Path, real_data: Path):
    """One magenta tile among the 73 of 72 images in batches of 32, and one image whose only
    tile is magenta (its info rides with that tile, not through the regrouping): those two
    images alone go to errors, and the 70 others score exactly as in a run without them."""
    keras.utils.set_random_seed(0)
    model_dir = save_model(tiny_model(PoisonGuard()), tmp_path / "poisoned-model")
    clean = tmp_path / "clean"
    for path in concrete(real_data, "Negative", 35) + concrete(real_data, "Positive", 35):
        (clean / path.parent.name).mkdir(parents=True, exist_ok=True)
        (clean / path.parent.name / path.name).write_bytes(path.read_bytes())
    poisoned = tmp_path / "poisoned.png"
    pixels = np.array(Image.open(concrete(real_data, "Negative", 1)[0]).convert("RGB")
                      .resize((454, 227)))
    pixels[:, :100] = (255, 0, 255)  # only in the first of its three tiles
    Image.fromarray(pixels).save(poisoned)
    poisoned_single = tmp_path / "poisoned-single.png"
    Image.fromarray(pixels[:, :227]).save(poisoned_single)

    reference = score("--input", clean, "--model", model_dir, "--output", tmp_path / "ref")
    summary = score("--input", clean, "--input", poisoned, "--input", poisoned_single,
                    "--model", model_dir, "--output", tmp_path / "out")

    assert reference["scored"] == 70 and reference["failed"] == 0
    assert (summary["seen"], summary["scored"], summary["failed"]) == (72, 70, 2)
    assert summary["failed_by_stage"]["inference"] == 2
    errors = sorted(read_jsonl(tmp_path / "out", "errors"), key=lambda row: row["uri"])
    assert [row["uri"] for row in errors] == sorted([str(poisoned), str(poisoned_single)])
    for row in errors:
        assert "poisoned tile" in row["error"] and row["stage"] == "inference"
    assert (without_time(read_predictions(tmp_path / "out"))
            == without_time(read_predictions(tmp_path / "ref")))


def tiles_of(real_data: Path, count: int) -> list[tuple[TileKey, np.ndarray]]:
    paths = concrete(real_data, "Positive", count // 2) + concrete(real_data, "Negative",
                                                                    count - count // 2)
    return [(TileKey(str(path), 0, (0, 0, 227, 227), 1), decode_rgb(path.read_bytes()))
            for path in paths]


def scores_close_to(expected: dict[str, float]):
    def check(actual: list[tuple[str, Any]]) -> None:
        uris = [uri for uri, _ in actual]
        assert sorted(uris) == sorted(expected), "a tile was lost or scored twice"
        for uri, tile_score in actual:
            assert abs(tile_score.crack_probability - expected[uri]) < TOLERANCE, uri
    return check


def test_a_transient_fault_mid_batch_is_retried_without_losing_or_doubling_tiles(
        real_data: Path, tiny_model_dir: Path):
    """The first model call of the run fails; every one of 70 tiles (three batches) is still
    scored exactly once, with the probability the model gives it."""
    spec = ModelCard.read(str(tiny_model_dir))
    tiles = tiles_of(real_data, 70)
    model = keras.saving.load_model(tiny_model_dir / "model.keras", compile=False)
    probabilities = model.predict_on_batch(np.stack([t for _, t in tiles]).astype(np.float32))
    expected = {key.uri: float(p[spec.positive_index]) for (key, _), p in zip(tiles,
                                                                                probabilities)}

    with BeamPipeline() as pipeline:
        scored = (pipeline | beam.Create(tiles)
                  | ScoreTiles(FlakyKerasHandler(spec, BATCH, failures=1)))
        assert_that(scored[SCORES], scores_close_to(expected), label="EveryTileOnce")
        assert_that(scored[FAILED], is_empty(), label="NothingFailed")


def test_a_tile_that_fails_alone_fails_its_image_and_no_other(
        real_data: Path, tiny_model_dir: Path):
    """A fault that repeats on every call for one tile: that tile's image is failed once,
    with the model's reason; the 69 tiles batched with it are scored."""
    spec = ModelCard.read(str(tiny_model_dir))
    tiles = tiles_of(real_data, 70)
    bad_uri = tiles[40][0].uri

    class BadTileHandler(KerasTileModelHandler):
        def predict(self, model: Any, batch: Sequence[np.ndarray]) -> np.ndarray:
            if any(np.array_equal(tile, tiles[40][1]) for tile in batch):
                raise ValueError("injected fault: this tile always fails")
            return super().predict(model, batch)

    model = keras.saving.load_model(tiny_model_dir / "model.keras", compile=False)
    probabilities = model.predict_on_batch(np.stack([t for _, t in tiles]).astype(np.float32))
    expected = {key.uri: float(p[spec.positive_index])
                for (key, _), p in zip(tiles, probabilities) if key.uri != bad_uri}

    with BeamPipeline() as pipeline:
        scored = pipeline | beam.Create(tiles) | ScoreTiles(BadTileHandler(spec, BATCH))
        assert_that(scored[SCORES], scores_close_to(expected), label="OthersScored")
        assert_that(scored[FAILED], equal_to([(bad_uri, "model failed on a tile of this "
                                               "image: ValueError: injected fault: this tile "
                                               "always fails")]), label="OneFailure")
