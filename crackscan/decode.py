"""Defensive image decoding: bytes in, an RGB uint8 array (or a reason why not) out.

Drone archives contain everything: zero-byte uploads, truncated JPEGs, text files named
``.jpg``, 16-bit TIFFs, CMYK scans, rotated phone photos, HEIC from newer drones, DNG raws
and the occasional decompression bomb. Every failure becomes a :class:`DecodeError` whose
message says what is wrong, so the caller can dead-letter the input with that reason. The
same function prepares images for the dataset builder and for scoring, so a model sees
identical pixels in both.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Iterator, NamedTuple

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError
from pillow_heif import register_heif_opener

from crackscan.photo_metadata import PhotoMetadata, read_metadata

# 120 megapixels: above any drone or DSLR sensor in use, below what exhausts a worker.
DEFAULT_MAX_PIXELS = 120_000_000
# Names that sampling for checks and benchmarks takes for images; scoring itself tries every
# file, whatever its name.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".heic", ".heif")
RAW_SUFFIX = ".dng"
# TIFF tag DNGVersion: a DNG is a TIFF whose first directory is a small preview, whatever
# the file is called.
DNG_VERSION_TAG = 50706

# Modes whose values are rescaled here, not by Pillow: 16-bit, 32-bit integer, float.
WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# Pixels converted at a time from any mode but RGB (see ``_to_rgb``).
BAND_PIXELS = 1 << 20
# EXIF orientation -> the rows-and-columns operation that shows the photo upright, as
# ``ImageOps.exif_transpose`` applies it (2: mirrored, 6: turned 90 degrees clockwise, ...).
ORIENTATIONS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}

# Our own limit is checked explicitly below; Pillow's global guard would otherwise warn or
# raise with a message that names neither the file nor the limit the user can change.
Image.MAX_IMAGE_PIXELS = None
# DJI, Apple and Samsung cameras write HEIC; Pillow reads it through this plugin.
register_heif_opener()


class DecodeError(ValueError):
    """The bytes are not an image this project can score; the message says why."""


class DecodedPhoto(NamedTuple):
    rgb: np.ndarray
    metadata: PhotoMetadata


def _raw_refusal(name: str | None) -> DecodeError:
    """Pillow opens a DNG as a TIFF and decodes its embedded preview: a verdict on a
    thumbnail would pass for a verdict on the photo, so raws are refused outright."""
    return DecodeError(f"{name or 'this file'} is a DNG raw photo: DNG raw is not decoded "
                       f"(only its embedded preview could be); convert it to TIFF or JPEG "
                       f"and score that")


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> Image.Image:
    """Parse the header only, refusing empty, unknown, raw and oversized inputs before
    decoding. ``name`` (the file's name or uri, where known) also refuses a ``.dng`` that
    Pillow cannot open, and is named in that refusal."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    if name is not None and name.lower().endswith(RAW_SUFFIX):
        raise _raw_refusal(name)
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise DecodeError(f"not an image: unrecognised format ({len(data)} bytes, "
                          f"starts {data[:8]!r})") from None
    except Exception as exc:
        raise DecodeError(f"unreadable image header: {type(exc).__name__}: {exc}") from None
    if image.format == "TIFF" and DNG_VERSION_TAG in getattr(image, "tag_v2", {}):
        raise _raw_refusal(name)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise DecodeError(f"invalid image dimensions {width}x{height}")
    if width * height > max_pixels:
        raise DecodeError(f"image is {width}x{height} = {width * height} pixels, over the "
                          f"{max_pixels}-pixel limit (decompression bomb guard)")
    return image


def _scale(image: Image.Image) -> float | None:
    """What 16-bit and float pixel values are divided by to span 0-255; None for modes
    Pillow converts itself. Needs the whole image's maximum, so it is found first."""
    if image.mode not in WIDE_MODES:
        return None
    width, height = image.size
    peak = max(np.asarray(image.crop((0, top, width, bottom)), dtype=np.float64).max(
        initial=1.0 if image.mode == "F" else 0.0) for top, bottom in _bands(image))
    if image.mode == "F":
        return max(float(peak), 1e-12)
    return 65535.0 if image.mode.startswith("I;16") or peak > 255 else 255.0


def _bands(image: Image.Image) -> Iterator[tuple[int, int]]:
    width, height = image.size
    rows = max(1, BAND_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        yield top, min(top + rows, height)


def _band_rgb(band: Image.Image, scale: float | None) -> np.ndarray:
    """One band in RGB with the full 8-bit range, whatever the mode."""
    if scale is not None:
        array = np.asarray(band, dtype=np.float64)
        return np.clip(array / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)[..., None]
    if band.mode in ("RGBA", "LA", "PA") or (band.mode == "P" and "transparency" in band.info):
        # Transparent survey pixels carry no concrete: show them as white, not black streaks.
        rgba = band.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(band.convert("RGB"))


def _to_rgb(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8 with the full 8-bit range, whatever the mode; 16-bit and float rescaled.

    Any mode but RGB is converted a band of rows at a time into the result: converting it
    whole would hold several full-size copies at once (a 16-bit image in float64 is 8 bytes
    a pixel, and the arithmetic makes three of them), so a small PNG of a large flat 16-bit
    image needed gigabytes. A band costs a few megabytes, whatever the image.
    """
    if image.mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    width, height = image.size
    scale = _scale(image)
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    for top, bottom in _bands(image):
        rgb[top:bottom] = _band_rgb(image.crop((0, top, width, bottom)), scale)
    return rgb


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, 1 (upright) when the EXIF is unreadable or the value unknown."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1
    return orientation if orientation in ORIENTATIONS else 1


def _upright(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """The photo as its camera meant it to be shown.

    Turned here, on the array, rather than by ``ImageOps.exif_transpose``: that rewrites the
    EXIF after turning, and raises on a malformed value anywhere in it (a GPS latitude
    written as text), which would lose a good photo to its metadata. Untouched photos are
    not copied.
    """
    if orientation not in ORIENTATIONS:
        return rgb
    return np.ascontiguousarray(ORIENTATIONS[orientation](rgb))


@contextlib.contextmanager
def _decoding(image: Image.Image) -> Iterator[None]:
    """Any failure while decoding the pixels as a :class:`DecodeError` with the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except DecodeError:
        raise
    except OSError as exc:
        raise DecodeError(f"corrupt or truncated image data ({image.format}): {exc}") from None
    except Exception as exc:
        raise DecodeError(f"cannot decode {image.format} image: "
                          f"{type(exc).__name__}: {exc}") from None


def decode_image(image: Image.Image) -> np.ndarray:
    """Fully decode an opened image: EXIF orientation applied, HxWx3 uint8."""
    with _decoding(image):
        image.load()
        return _upright(_to_rgb(image), _orientation(image))


def decode_rgb(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes to an HxWx3 uint8 array, or :class:`DecodeError` with the reason."""
    return decode_image(open_image(data, max_pixels))


def decode_photo(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                 name: str | None = None) -> DecodedPhoto:
    """:func:`decode_rgb` plus the photo's metadata, from one opening of the file.

    The metadata is read once the pixels are loaded: a PNG may keep its EXIF after them,
    and a photo whose pixels are broken fails for that reason alone. Reading the metadata
    never raises: only the pixels can fail the photo.
    """
    image = open_image(data, max_pixels, name)
    with _decoding(image):
        image.load()
    metadata = read_metadata(image)
    return DecodedPhoto(decode_image(image), metadata)


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
