"""Calibration images for the int8 model: a few hundred training windows from every
(source, class) of the data set, as the scorer feeds them.

Post-training quantization fixes each activation's int8 range from what the calibration
images make it do, and clips everything outside. The first N records of the train split
follow the sources' sizes (wallseg's 6,754 windows against masonry's 133), and images of
another size than the first were skipped, so whole sources went uncalibrated and their
activations were clipped in use. Equal shares per (source, class), in file order (the shards
are in content-hash order, i.e. shuffled), give every kind of surface its ranges.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from training import input_pipeline, tfrecords

DEFAULT_PER_STREAM = 32  # 10 streams on the field data: 320 images


def streams(data_dir: str) -> list[tuple[str, int]]:
    """The (source, label) pairs the train split has examples of, per its manifest."""
    counts = input_pipeline.read_manifest(data_dir)["counts_by_source"]["train"]
    return sorted(input_pipeline.stream_weights(counts))


def calibration_images(data_dir: str, tile_size: int, per_stream: int = DEFAULT_PER_STREAM
                       ) -> tuple[np.ndarray, dict[str, int]]:
    """Up to ``per_stream`` train images of each (source, class), resized to the tile size
    the model's LiteRT input takes (float32, 0-255), and how many each stream gave.

    Reading stops as soon as every stream has its share.
    """
    if per_stream < 1:
        raise ValueError(f"per_stream must be at least 1, got {per_stream}")
    wanted = streams(data_dir)
    taken: dict[tuple[str, int], list[np.ndarray]] = {stream: [] for stream in wanted}
    for serialized in tf.data.TFRecordDataset(input_pipeline.shard_files(data_dir, "train")):
        example = tfrecords.parse(serialized)
        stream = (example["image/source"].numpy().decode(),
                  int(example["image/label"].numpy()))
        if len(taken.get(stream, [per_stream])) >= per_stream:
            continue
        pixels = tfrecords.decode_pixels(example["image/encoded"], example["image/format"])
        taken[stream].append(input_pipeline.resize(pixels, tile_size).numpy())
        if all(len(images) >= per_stream for images in taken.values()):
            break
    images = [image for stream in wanted for image in taken[stream]]
    if not images:
        raise input_pipeline.DataError(f"{data_dir}: the train split holds no labelled "
                                       f"image to calibrate the int8 model on")
    return (np.stack(images).astype(np.float32),
            {f"{source}/{label}": len(taken[(source, label)]) for source, label in wanted})
