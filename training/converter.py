"""The LiteRT converter for a Keras 3 model, with the input the scorer feeds.

Through a SavedModel: converting a Keras 3 model's concrete function directly loses its
variables (the file comes out without weights and returns NaN). The input is fixed at the
card's ``tile_size`` square (the batch stays dynamic): the scoring pipeline only ever feeds
tiles of that size, and a fixed shape lets the converter fold the resize into a static op.
"""
from __future__ import annotations

import contextlib
import tempfile
from typing import Iterator

import keras
import tensorflow as tf


@contextlib.contextmanager
def saved_model_converter(model: keras.Model, tile_size: int
                          ) -> Iterator[tf.lite.TFLiteConverter]:
    """A converter over ``model`` with input ``[batch, tile_size, tile_size, 3]`` float32;
    its SavedModel lives until the block ends, so convert (or calibrate) inside it."""
    signature = tf.TensorSpec([None, tile_size, tile_size, 3], tf.float32, name="image")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda image: model(image, training=False),
                         input_signature=[signature])
    with tempfile.TemporaryDirectory() as saved_model:
        archive.write_out(saved_model, verbose=False)
        yield tf.lite.TFLiteConverter.from_saved_model(saved_model)
