"""Defensive image decoding: bytes in, an RGB uint8 array (or a reason why not) out.

Drone archives contain everything: zero-byte uploads, truncated JPEGs, text files named
``.jpg``, 16-bit TIFFs, CMYK scans, rotated phone photos and the occasional decompression
bomb. Every failure becomes a :class:`DecodeError` whose message says what is wrong, so the
caller can dead-letter the input with that reason. The same function prepares images for
the dataset builder and for scoring, so a model sees identical pixels in both.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 120 megapixels: above any drone or DSLR sensor in use, below what exhausts a worker.
DEFAULT_MAX_PIXELS = 120_000_000

# Our own limit is checked explicitly below; Pillow's global guard would otherwise warn or
# raise with a message that names neither the file nor the limit the user can change.
Image.MAX_IMAGE_PIXELS = None


class DecodeError(ValueError):
    """The bytes are not an image this project can score; the message says why."""


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Parse the header only, refusing empty, unknown and oversized inputs before decoding."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise DecodeError(f"not an image: unrecognised format ({len(data)} bytes, "
                          f"starts {data[:8]!r})") from None
    except Exception as exc:
        raise DecodeError(f"unreadable image header: {type(exc).__name__}: {exc}") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise DecodeError(f"invalid image dimensions {width}x{height}")
    if width * height > max_pixels:
        raise DecodeError(f"image is {width}x{height} = {width * height} pixels, over the "
                          f"{max_pixels}-pixel limit (decompression bomb guard)")
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB with the full 8-bit range, whatever the mode; 16-bit and float are rescaled."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        if image.mode == "F":
            top = max(float(array.max(initial=1.0)), 1e-12)
        scaled = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent survey pixels carry no concrete: show them as white, not black streaks.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image(image: Image.Image) -> np.ndarray:
    """Fully decode an opened image: EXIF orientation applied, HxWx3 uint8."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            # In place: otherwise Pillow returns a full copy even when nothing rotates,
            # an extra 86 MB for a 4800x6000 survey photo.
            ImageOps.exif_transpose(image, in_place=True)
            rgb = _to_rgb(image)
    except DecodeError:
        raise
    except OSError as exc:
        raise DecodeError(f"corrupt or truncated image data ({image.format}): {exc}") from None
    except Exception as exc:
        raise DecodeError(f"cannot decode {image.format} image: "
                          f"{type(exc).__name__}: {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)


def decode_rgb(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes to an HxWx3 uint8 array, or :class:`DecodeError` with the reason."""
    return decode_image(open_image(data, max_pixels))


def needs_reencoding(image: Image.Image) -> bool:
    """Whether TensorFlow's own JPEG/PNG decoders would see other pixels than we do.

    Baseline 8-bit RGB or greyscale JPEG/PNG without an EXIF rotation decode identically in
    Pillow and TensorFlow (JPEG with the accurate DCT); anything else is stored re-encoded.
    """
    if image.format not in ("JPEG", "PNG") or image.mode not in ("RGB", "L"):
        return True
    if getattr(image, "is_animated", False):
        return True
    return image.getexif().get(0x0112, 1) != 1
