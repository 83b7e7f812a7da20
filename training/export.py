"""Export: ``model.keras`` plus its model card, checked by reloading before it ships."""
from __future__ import annotations

import platform
import posixpath
from typing import Any

import apache_beam
import keras
import numpy as np
import tensorflow as tf

from crackscan import model_card
from training import input_pipeline, tfrecords


def native_batch(data_dir: str, split: str, count: int) -> tuple[np.ndarray, list[str]]:
    """Up to ``count`` decoded uint8 images of one size, as a user would pass them."""
    images, hashes = [], []
    for serialized in tf.data.TFRecordDataset(input_pipeline.shard_files(data_dir, split)):
        example = tfrecords.parse(serialized)
        image = tfrecords.decode_pixels(example["image/encoded"], example["image/format"])
        if images and image.shape != images[0].shape:
            continue
        images.append(image.numpy())
        hashes.append(example["image/sha256"].numpy().decode())
        if len(images) == count:
            break
    return np.stack(images), hashes


def verify(model_path: str, images: np.ndarray, expected: np.ndarray) -> float:
    """Largest gap between the reloaded model on raw uint8 images and the evaluation."""
    reloaded = keras.saving.load_model(model_path, safe_mode=True)
    return float(np.max(np.abs(reloaded.predict_on_batch(images)[:, 1] - expected)))


def save_model(model: keras.Model, output: str) -> str:
    """``model.keras`` in ``output``; its path."""
    model_path = posixpath.join(output, model_card.MODEL_FILE)
    model.save(model_path)
    return model_path


def describe(card: dict[str, Any], model_path: str) -> dict[str, Any]:
    """The card naming the saved model by content hash, so tampering shows, and the
    library versions it was made with. The caller writes it, once, when it is complete."""
    return card | {
        "model_file": model_card.MODEL_FILE,
        "model_sha256": model_card.file_sha256(model_path),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "apache_beam": apache_beam.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }
