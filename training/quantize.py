"""Selective post-training quantization: int8 everywhere except the layers whose
quantization error matters, which stay float.

TensorFlow Lite's quantization debugger calibrates once and keeps the calibrated model, so
each trial set of float layers costs one re-quantization (seconds), not a new calibration.
It also measures every quantized layer against the float op run on the same input:
``rmse / scale`` is that error in units of the layer's own quantization step. Rounding
alone gives about 0.29 (a uniform error over one step); a layer far above that clips its
calibrated range or suffers from per-tensor scales, and is where float precision helps most.

Weights are quantized per channel (the converter's default for convolutions), activations
per tensor. Input and output stay float32: the model's output is a probability compared with
the threshold, and a uint8 output (steps of 1/256) alone would move verdicts near it.
"""
from __future__ import annotations

import csv
import io
import math
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from training.converter import saved_model_converter


def _one_at_a_time(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    return ([image[None].astype(np.float32)] for image in images)


class SelectiveQuantizer:
    """One calibrated model, quantized with any set of layers kept in float."""

    def __init__(self, model: keras.Model, tile_size: int, calibration: np.ndarray,
                 debug_images: np.ndarray) -> None:
        with saved_model_converter(model, tile_size) as converter:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: _one_at_a_time(calibration)
            self._debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=lambda: _one_at_a_time(debug_images))

    def layer_errors(self) -> dict[str, float]:
        """``rmse / scale`` of every quantized layer's output on the debug images, by the
        name ``quantized`` takes, largest first."""
        self._debugger.run()
        dump = io.StringIO()
        self._debugger.layer_statistics_dump(dump)
        dump.seek(0)
        errors = {row["tensor_name"]: math.sqrt(float(row["mean_squared_error"]))
                  / float(row["scale"]) for row in csv.DictReader(dump)
                  if float(row["scale"]) > 0}
        return dict(sorted(errors.items(), key=lambda item: -item[1]))

    def quantized(self, float_layers: Sequence[str] = ()) -> bytes:
        """The LiteRT flatbuffer with ``float_layers`` (layer names from
        :meth:`layer_errors`) left in float and every other supported op in int8."""
        self._debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=list(float_layers))
        return self._debugger.get_nondebug_quantized_model()
