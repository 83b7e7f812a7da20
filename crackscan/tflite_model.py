"""Run the exported ``model.tflite`` with the LiteRT interpreter (XNNPACK on CPU).

Shared by the export check, the scoring pipeline and the benchmark, so all three run the
file exactly the same way. An interpreter is not thread-safe: give each thread its own.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from crackscan.native_stderr import native_info_to_debug


class TFLiteClassifier:
    """One LiteRT interpreter: a batch of 0-255 RGB images -> class probabilities.

    A full-integer model is fed and read through its tensors' scale and zero point, so
    callers pass and get the same floats for either kind of model. The input tensor is
    resized to the batch only when the batch size changes: a resize re-plans every tensor.
    """

    def __init__(self, model_content: bytes, threads: int) -> None:
        # Imported here so that code paths that never run LiteRT do not load it.
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=model_content, num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._shape: tuple[int, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input's shape with -1 for the batch (and any other dynamic) dimension."""
        return tuple(int(d) for d in self._input["shape_signature"])

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The output's shape, -1 where dynamic: a mask model's is ``(-1, S, S, 1)``."""
        return tuple(int(d) for d in self._output["shape_signature"])

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities for a batch: an NHWC array, or a sequence of HWC images of one
        size (uint8 or float, 0-255).

        A float model's input is written straight into the interpreter's own input tensor,
        converted on the way: no stacked batch and no second copy of it per call.
        """
        shape = (len(images), *np.shape(images[0]))
        if shape != self._shape:
            self._interpreter.resize_tensor_input(self._input["index"], shape, strict=True)
            with native_info_to_debug():  # the first plan announces XNNPACK on stderr
                self._interpreter.allocate_tensors()
            self._shape = shape
        scale, zero_point = self._input["quantization"]
        if scale:
            dtype = self._input["dtype"]
            limits = np.iinfo(dtype)
            pixels = np.stack(images).astype(np.float32)
            self._interpreter.set_tensor(self._input["index"], np.clip(
                np.round(pixels / scale + zero_point), limits.min, limits.max).astype(dtype))
        else:
            # The view must be gone before invoke(), which refuses to run while one is held.
            np.stack(images, out=self._interpreter.tensor(self._input["index"])())
        self._interpreter.invoke()
        output = self._interpreter.get_tensor(self._output["index"])
        scale, zero_point = self._output["quantization"]
        if scale:
            return (output.astype(np.float32) - zero_point) * scale
        # A copy: the interpreter reuses the output buffer on the next call.
        return output.copy()
