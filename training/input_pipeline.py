"""tf.data input from the TFRecord shards: parallel reads, decode, resize, augment, batch.

Resizing here uses the same op and settings as the model's own ``Resizing`` layer, so an
image resized by the pipeline and an image of its original size resized inside the model
give identical pixels: evaluation and the exported model agree exactly.
"""
from __future__ import annotations

import posixpath

import keras
import tensorflow as tf

from training import records

AUTOTUNE = tf.data.AUTOTUNE


def shard_files(data_dir: str, split: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(posixpath.join(data_dir, f"{split}-*.tfrecord")))
    if not files:
        raise FileNotFoundError(f"{data_dir}: no {split}-*.tfrecord shards; run "
                                f"training.build_dataset first")
    return files


def augmenter(seed: int) -> keras.Sequential:
    """Cracks have no preferred direction: flips and free rotations keep the label."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
        keras.layers.RandomRotation(0.5, fill_mode="reflect", seed=seed + 1),
    ], name="augmentation")


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    return tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=False)


def dataset(data_dir: str, split: str, image_size: int, batch_size: int,
            training: bool = False, seed: int = 0, with_meta: bool = False) -> tf.data.Dataset:
    """Batches of (float 0-255 RGB images, labels); ``with_meta`` adds (source, sha256)."""
    files = tf.data.Dataset.from_tensor_slices(shard_files(data_dir, split))
    if training:
        files = files.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = files.interleave(tf.data.TFRecordDataset, cycle_length=AUTOTUNE,
                          num_parallel_calls=AUTOTUNE, deterministic=not training)
    if training:
        ds = ds.shuffle(4096, seed=seed, reshuffle_each_iteration=True)

    def load(serialized: tf.Tensor):
        example = records.parse(serialized)
        image = resize(records.decode_pixels(example["image/encoded"],
                                             example["image/format"]), image_size)
        label = tf.cast(example["image/label"], tf.int32)
        if with_meta:
            return image, label, (example["image/source"], example["image/sha256"])
        return image, label

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=not training)
    ds = ds.batch(batch_size, drop_remainder=False)
    if training:
        augment = augmenter(seed)
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
