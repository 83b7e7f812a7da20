"""The TFRecord schema: one place that writes a training example and one that parses it.

A record holds the encoded image bytes exactly as the scorer would decode them: baseline
JPEG/PNG is stored untouched; anything TensorFlow's decoders would read differently (TIFF,
WebP, CMYK, 16-bit, EXIF-rotated) is stored as a lossless PNG of the pixels that
:func:`crackscan.decode.decode_image` produces. Training and scoring therefore see the same
pixels, byte for byte.
"""
from __future__ import annotations

import io

import tensorflow as tf
from PIL import Image

from crackscan import decode

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/label": tf.io.FixedLenFeature([], tf.int64),
    "image/source": tf.io.FixedLenFeature([], tf.string),
    "image/sha256": tf.io.FixedLenFeature([], tf.string),
}


def training_bytes(data: bytes, max_pixels: int = decode.DEFAULT_MAX_PIXELS
                   ) -> tuple[bytes, str, tuple[int, int]]:
    """Encoded bytes, their format and (width, height); raises DecodeError for bad input."""
    image = decode.open_image(data, max_pixels)
    fmt = (image.format or "").lower()
    reencode = decode.needs_reencoding(image)
    rgb = decode.decode_image(image)  # Fully decoded even when kept: catches truncation.
    if not reencode:
        return data, "jpeg" if fmt == "jpeg" else "png", (rgb.shape[1], rgb.shape[0])
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue(), "png", (rgb.shape[1], rgb.shape[0])


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def serialize(encoded: bytes, fmt: str, label: int, source: str, sha256: str) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": _bytes(encoded),
        "image/format": _bytes(fmt.encode()),
        "image/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "image/source": _bytes(source.encode()),
        "image/sha256": _bytes(sha256.encode()),
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
