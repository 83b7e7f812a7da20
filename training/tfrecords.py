"""The TFRecord schema of the training data: one place that writes an example, one that parses it.

A record holds the encoded image bytes exactly as the scorer would decode them: baseline
JPEG/PNG is stored untouched; anything TensorFlow's decoders would read differently (TIFF,
WebP, CMYK, 16-bit, EXIF-rotated) is stored as a lossless PNG of the pixels that
:func:`crackscan.decode.decode_image` produces. Training and scoring therefore see the same
pixels, byte for byte.
"""
from __future__ import annotations

import io

import numpy as np
import tensorflow as tf
from PIL import Image

from crackscan import decode

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/label": tf.io.FixedLenFeature([], tf.int64),
    "image/uri": tf.io.FixedLenFeature([], tf.string),
    "image/source": tf.io.FixedLenFeature([], tf.string),
    "image/sha256": tf.io.FixedLenFeature([], tf.string),
    "image/photo": tf.io.FixedLenFeature([], tf.string),
    "image/box": tf.io.FixedLenFeature([4], tf.int64),
    "image/hard_negative": tf.io.FixedLenFeature([], tf.int64),
}


def training_bytes(data: bytes, max_pixels: int = decode.DEFAULT_MAX_PIXELS
                   ) -> tuple[bytes, str, np.ndarray]:
    """Encoded bytes, their format and the decoded pixels; raises DecodeError for bad input."""
    image = decode.open_image(data, max_pixels)
    fmt = (image.format or "").lower()
    reencode = decode.needs_reencoding(image)
    rgb = decode.decode_image(image)  # Fully decoded even when kept: catches truncation.
    if not reencode:
        return data, "jpeg" if fmt == "jpeg" else "png", rgb
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue(), "png", rgb


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(*values: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def serialize(example: dict) -> bytes:
    """One record: the image, its label (-1: a window left out of training), the file it
    came from, the source it belongs to, its window box and the photo it was cut from."""
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": _bytes(example["encoded"]),
        "image/format": _bytes(example["format"].encode()),
        "image/label": _ints(example["label"]),
        "image/uri": _bytes(example["uri"].encode()),
        "image/source": _bytes(example["source"].encode()),
        "image/sha256": _bytes(example["sha256"].encode()),
        "image/photo": _bytes(example["photo"].encode()),
        "image/box": _ints(*example["box"]),
        "image/hard_negative": _ints(int(example["hard_negative"])),
    })).SerializeToString()


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    return tf.io.parse_single_example(serialized, FEATURES)


def decode_pixels(encoded: tf.Tensor, fmt: tf.Tensor) -> tf.Tensor:
    """HxWx3 uint8, identical to Pillow's pixels (accurate DCT, as libjpeg's default)."""
    image = tf.cond(
        tf.equal(fmt, "jpeg"),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_png(encoded, channels=3),
    )
    image.set_shape([None, None, 3])
    return image
