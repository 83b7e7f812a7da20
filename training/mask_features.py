"""The frozen encoder's skip features of the training windows, computed once and kept.

On two CPU cores the encoder's pass is most of what a training step would cost, and with the
encoder frozen it gives the same features every epoch: computing them once and training the
decoder on the cache makes an epoch several times cheaper. They are kept in float16 (0.64
MB a 224 px window; the decoder computes in float32). The price is augmentation: the
features of a flipped window are not the flipped features, so the decoder sees each window
as it is; the sampling spreads over many photos instead.
"""
from __future__ import annotations

import logging
import math

import keras
import numpy as np

log = logging.getLogger("crackscan.train_masks")


def encode(encoder_model: keras.Model, images: np.ndarray, batch_size: int = 32
           ) -> list[np.ndarray]:
    """Each skip feature of every image (0-255 RGB), float16, in the images' order."""
    features: list[list[np.ndarray]] | None = None
    batches = math.ceil(len(images) / batch_size)
    for index in range(batches):
        batch = images[index * batch_size:(index + 1) * batch_size].astype(np.float32)
        outputs = encoder_model.predict_on_batch(batch / 127.5 - 1.0)
        if features is None:
            features = [[] for _ in outputs]
        for kept, output in zip(features, outputs):
            kept.append(np.asarray(output, dtype=np.float16))
        if (index + 1) % 10 == 0 or index + 1 == batches:
            log.info("encoded %d of %d windows", min((index + 1) * batch_size, len(images)),
                     len(images))
    return [np.concatenate(kept) for kept in features or []]


class CachedWindows(keras.utils.PyDataset):
    """Batches of ``([image, skips...], crack mask)`` from the cache, reshuffled each epoch
    from ``seed``; the last partial batch is kept."""

    def __init__(self, images: np.ndarray, features: list[np.ndarray], cracks: np.ndarray,
                 batch_size: int, seed: int | None = None) -> None:
        super().__init__()
        self.images, self.features, self.cracks = images, features, cracks
        self.batch_size = batch_size
        self._rng = None if seed is None else np.random.default_rng(seed)
        self._order = np.arange(len(images))
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        rows = np.sort(self._order[index * self.batch_size:(index + 1) * self.batch_size])
        inputs = (self.images[rows].astype(np.float32),
                  *(feature[rows].astype(np.float32) for feature in self.features))
        return inputs, self.cracks[rows, ..., None].astype(np.float32)

    def on_epoch_end(self) -> None:
        if self._rng is not None:
            self._order = self._rng.permutation(len(self.images))
