"""Synthetic concrete-crack images, so the product can be tried and tested without real data.

The public "Concrete Crack Images for Classification" set cannot be shipped with the code, yet
users without it must still see training and scoring work end to end, offline. This module
draws a small stand-in in the same layout (``Negative/`` and ``Positive/`` folders of 227x227
RGB JPEGs named ``00001.jpg``) plus a zip of larger "drone survey" photos with a few local
cracks and one truncated file, the shape of a real archive.

Cracks are dark, jagged, tapering and sometimes branching random walks; the concrete is
multi-octave noise with pores, grain and tint. Stains, shadows and clustered pores appear in
both classes alike, so a model has to find the crack itself rather than a side cue. Texture
features are sized in pixels, not relative to the image, so 227-pixel tiles cut from a survey
photo look like the patches a model was trained on. Every output is a pure function of the
seed: the same seed gives byte-identical files.
"""
from __future__ import annotations

import io
import math
import os
import zipfile

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from crackscan.labels import CLASS_NAMES

JPEG_QUALITY = 90
BROKEN_MEMBER = "survey/DJI_BROKEN.JPG"
# Enough to hold a JPEG header and the start of the scan, so the file opens but cannot decode.
_BROKEN_BYTES = 2048
# Lines are drawn this many times larger and box-filtered down, for anti-aliased sub-pixel
# widths; without it 1-2 px cracks come out as stair-stepped ruler lines.
_SUPERSAMPLE = 3
# A fixed member timestamp keeps the zip byte-identical between runs.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# The reference patch side: distractor counts scale with area relative to it.
_PATCH_AREA = 227 * 227


def _smooth_noise(rng: np.random.Generator, height: int, width: int,
                  period: float) -> np.ndarray:
    """Value noise with blobs about `period` pixels wide, float32, roughly unit scale.

    A coarse random grid is bicubically resized over a random sub-pixel window, which is
    fast at any size and never shows the grid alignment.
    """
    rows = int(math.ceil(height / period)) + 4
    cols = int(math.ceil(width / period)) + 4
    grid = Image.fromarray(rng.standard_normal((rows, cols)).astype(np.float32))
    left, top = rng.uniform(1.0, 2.0, size=2)
    box = (left, top, left + width / period, top + height / period)
    return np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC, box=box))


def _blur_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of a [0, 1] mask; Pillow blurs only 8-bit images, which is precise enough."""
    image = Image.fromarray(np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def _pore_mask(rng: np.random.Generator, height: int, width: int, count: int,
               radius: tuple[float, float], centre: tuple[float, float] | None = None,
               spread: float = 0.0) -> np.ndarray:
    """Small dark air voids: scattered, or clustered round `centre` like formwork bug holes."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if centre is None:
        xs = rng.uniform(0, width, count)
        ys = rng.uniform(0, height, count)
    else:
        xs = rng.normal(centre[0], spread, count)
        ys = rng.normal(centre[1], spread, count)
    rx = rng.uniform(*radius, count)
    ry = rx * rng.uniform(0.6, 1.0, count)
    depth = rng.uniform(120, 255, count)
    for x, y, a, b, d in zip(xs, ys, rx, ry, depth):
        draw.ellipse((x - a, y - b, x + a, y + b), fill=int(d))
    return _blur_mask(np.asarray(canvas, dtype=np.float32) / 255.0, 0.6)


def concrete_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Grey concrete surface, HxWx3 uint8, varied per call in tone, roughness and tint.

    Several noise octaves give mottling and aggregate, grain and speckles give the fine
    surface, pores give the voids real patches always show, and a gentle gradient and blur
    stand in for uneven light and camera softness.
    """
    base = rng.uniform(115.0, 200.0)
    roughness = rng.uniform(0.6, 1.4)
    grey = np.full((height, width), base, dtype=np.float32)
    octaves = ((400, 8.0), (160, 6.0), (60, 5.0), (22, 4.0), (8, 4.0), (4, 4.0), (2, 3.0))
    for period, amplitude in octaves:
        grey += roughness * amplitude * _smooth_noise(rng, height, width, period)
    grey += rng.normal(0.0, rng.uniform(3.0, 7.0), (height, width)).astype(np.float32)

    speckles = np.zeros((height, width), dtype=np.float32)
    count = int(height * width * rng.uniform(0.005, 0.02))
    speckles[rng.integers(0, height, count), rng.integers(0, width, count)] = (
        rng.normal(0.0, 1.0, count))
    light = _blur_mask(np.clip(speckles, 0, 1), 0.7)
    dark = _blur_mask(np.clip(-speckles, 0, 1), 0.7)
    grey += 80.0 * light - 80.0 * dark

    pores = int(rng.uniform(2, 40) * height * width / _PATCH_AREA)
    grey *= 1.0 - rng.uniform(0.3, 0.6) * _pore_mask(rng, height, width, pores, (0.7, 2.2))

    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = ((xs - width / 2) * math.cos(angle) + (ys - height / 2) * math.sin(angle))
    grey *= 1.0 + rng.uniform(-0.15, 0.15) * ramp / max(height, width)

    tint = 1.0 + rng.normal(0.0, 0.012, 3) + rng.uniform(-0.02, 0.04) * np.array([1, 0, -1])
    rgb = grey[..., None] * tint.astype(np.float32)
    rgb += 1.2 * np.stack([_smooth_noise(rng, height, width, 48) for _ in range(3)], axis=-1)
    image = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.6))))


def _add_distractors(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stains, a shadow edge and bug-hole clusters: dark but not long thin connected lines.

    Applied to both classes with the same odds, so none of them tells the label.
    """
    height, width = image.shape[:2]
    out = image.astype(np.float32)
    if rng.random() < 0.35:
        period = rng.uniform(30, 90)
        blob = (_smooth_noise(rng, height, width, period)
                + 0.5 * _smooth_noise(rng, height, width, period / 3))
        stain = _sigmoid((blob - rng.uniform(0.6, 1.4)) * rng.uniform(3, 10))
        colour = np.array([1.0, 1.05, 1.15], dtype=np.float32) * rng.uniform(0.1, 0.35)
        out *= 1.0 - stain[..., None] * colour
    if rng.random() < 0.3:
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        distance = ((xs - rng.uniform(0.2, 0.8) * width) * math.cos(angle)
                    + (ys - rng.uniform(0.2, 0.8) * height) * math.sin(angle))
        shadow = _sigmoid(distance / rng.uniform(4, 40))
        out *= 1.0 - rng.uniform(0.15, 0.45) * shadow[..., None]
    if rng.random() < 0.35:
        clusters = max(1, rng.poisson(0.5 * height * width / _PATCH_AREA))
        mask = np.zeros((height, width), dtype=np.float32)
        for _ in range(clusters):
            centre = (rng.uniform(0, width), rng.uniform(0, height))
            mask = np.maximum(mask, _pore_mask(rng, height, width, int(rng.integers(6, 30)),
                                               (1.5, 4.5), centre, rng.uniform(10, 40)))
        out *= 1.0 - rng.uniform(0.35, 0.6) * mask[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _walk(rng: np.random.Generator, start: np.ndarray, heading: float, length: float,
          step: float) -> np.ndarray:
    """A jagged path: the direction wanders round `heading` and kinks now and then."""
    count = max(2, int(length / step))
    wobble = rng.normal(0.0, 0.25, count)
    kinks = np.where(rng.random(count) < 0.07, rng.uniform(-0.9, 0.9, count), 0.0)
    deviation = np.empty(count)
    current = 0.0
    for index in range(count):
        current = 0.8 * current + wobble[index] + kinks[index]
        deviation[index] = current
    angles = heading + deviation
    steps = step * rng.uniform(0.5, 1.5, count)
    moves = np.stack([np.cos(angles), np.sin(angles)], axis=1) * steps[:, None]
    path = np.vstack([start, start + np.cumsum(moves, axis=0)])
    path[1:] += rng.normal(0.0, 0.4, path[1:].shape)
    return path


def _draw_polyline(draw: ImageDraw.ImageDraw, path: np.ndarray, widths: np.ndarray) -> None:
    """Variable-width line with round joints (no gaps at kinks), in supersampled pixels."""
    scaled = path * _SUPERSAMPLE
    for (x0, y0), (x1, y1), width in zip(scaled[:-1], scaled[1:], widths[:-1]):
        pixels = max(1.0, width * _SUPERSAMPLE)
        draw.line((x0, y0, x1, y1), fill=255, width=int(round(pixels)))
        radius = pixels / 2
        draw.ellipse((x1 - radius, y1 - radius, x1 + radius, y1 + radius), fill=255)


def _crack_mask(rng: np.random.Generator, height: int, width: int,
                local: bool = False) -> np.ndarray:
    """Coverage in [0, 1] of one crack crossing a good part of an HxW image.

    A patch crack runs off the edges like a crop of a longer one; a `local` crack is shorter
    and centred, so it tapers out inside its window instead of being cut off at the border.
    """
    size = min(height, width)
    length = rng.uniform(0.6, 0.85) * size if local else rng.uniform(0.8, 1.5) * size
    spread = (0.45, 0.55) if local else (0.25, 0.75)
    centre = np.array([rng.uniform(*spread) * width, rng.uniform(*spread) * height])
    heading = rng.uniform(0, 2 * math.pi)
    step = rng.uniform(2.5, 5.0)
    backward = _walk(rng, centre, heading + math.pi, length / 2, step)[::-1]
    forward = _walk(rng, centre, heading, length / 2, step)
    path = np.vstack([backward, forward[1:]])

    along = np.linspace(0.0, 1.0, len(path))
    knots = int(rng.integers(4, 10))
    variation = np.interp(along, np.linspace(0, 1, knots), rng.uniform(0.5, 1.0, knots))
    taper = np.sqrt(np.sin(math.pi * np.clip(along, 0.02, 0.98)))
    base_width = 1.0 + 5.0 * rng.beta(1.3, 2.2)
    widths = np.maximum(0.7, base_width * variation * taper)

    canvas = Image.new("L", (width * _SUPERSAMPLE, height * _SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    _draw_polyline(draw, path, widths)
    for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
        index = int(rng.integers(len(path) // 10, len(path) * 9 // 10))
        local = path[min(index + 1, len(path) - 1)] - path[max(index - 1, 0)]
        side = rng.choice([-1.0, 1.0])
        branch_heading = math.atan2(local[1], local[0]) + side * rng.uniform(0.35, 1.1)
        branch = _walk(rng, path[index], branch_heading, rng.uniform(0.15, 0.45) * length, step)
        start_width = widths[index] * rng.uniform(0.4, 0.8)
        _draw_polyline(draw, branch, np.linspace(max(0.8, start_width), 0.6, len(branch)))
    small = canvas.resize((width, height), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _apply_crack(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darken along `mask`: a dark core with uneven depth, and a faint shaded rim."""
    height, width = mask.shape
    variation = np.tanh(_smooth_noise(rng, height, width, 8))
    depth = rng.uniform(0.6, 0.85) * (0.8 + 0.2 * variation)
    rim = _blur_mask(mask, rng.uniform(1.2, 2.5)) * rng.uniform(0.08, 0.2)
    shade = np.clip(mask * depth + rim, 0.0, 0.95)
    out = image.astype(np.float32) * (1.0 - shade[..., None])
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _crack(image: np.ndarray, rng: np.random.Generator,
           local: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The cracked copy and the crack's coverage mask, which survey boxes are taken from."""
    mask = _crack_mask(rng, image.shape[0], image.shape[1], local)
    return _apply_crack(image, mask, rng), mask


def draw_crack(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of `image` with one crack across a good part of it; the input is not changed."""
    return _crack(image, rng)[0]


def make_patch(rng: np.random.Generator, crack: bool, size: int = 227) -> np.ndarray:
    """One size x size training patch, HxWx3 uint8, with or without a crack."""
    image = _add_distractors(concrete_texture(rng, size, size), rng)
    return draw_crack(image, rng) if crack else image


def _jpeg_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_patch_folder(root: str, per_class: int, seed: int = 0, size: int = 227) -> dict[str, int]:
    """Write ``root/Negative/00001.jpg ...`` and ``root/Positive/...``; return counts per class.

    Each image has its own generator derived from (seed, class, index), so a smaller
    `per_class` writes a prefix of a larger one with the same seed. Other files already in
    the folders are left alone.
    """
    counts: dict[str, int] = {}
    for label, name in enumerate(CLASS_NAMES):
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for index in range(1, per_class + 1):
            rng = np.random.default_rng([seed, label, index])
            with open(os.path.join(folder, f"{index:05d}.jpg"), "wb") as handle:
                handle.write(_jpeg_bytes(make_patch(rng, crack=bool(label), size=size)))
        counts[name] = per_class
    return counts


def _survey_photo(rng: np.random.Generator, width: int, height: int,
                  cracks: int) -> tuple[np.ndarray, list[list[int]]]:
    """A survey photo with `cracks` local cracks, each drawn in its own few-hundred-pixel
    window, and their bounding boxes as ``[x0, y0, x1, y1]`` (x1, y1 exclusive)."""
    image = _add_distractors(concrete_texture(rng, height, width), rng)
    boxes = []
    for _ in range(cracks):
        side = int(min(rng.uniform(300, 550), width, height))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        window = image[top:top + side, left:left + side]
        cracked, mask = _crack(window, rng, local=True)
        image[top:top + side, left:left + side] = cracked
        rows = np.flatnonzero(mask.max(axis=1) > 0.05)
        cols = np.flatnonzero(mask.max(axis=0) > 0.05)
        boxes.append([left + int(cols[0]), top + int(rows[0]),
                      left + int(cols[-1]) + 1, top + int(rows[-1]) + 1])
    return image, boxes


def write_survey_archive(path: str, photos: int = 6, seed: int = 1,
                         size: tuple[int, int] = (1600, 1200)) -> list[dict]:
    """Write a zip of drone-style survey photos, about half with 1-3 local cracks, plus one
    truncated JPEG, ``survey/DJI_BROKEN.JPG``, that opens but does not decode.

    `size` is (width, height). Returns one dict per member, in archive order:
    ``{"name", "crack" (None for the broken one), "boxes": [[x0, y0, x1, y1], ...]}``.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    cracked = rng.permutation(np.arange(photos) < (photos + 1) // 2)
    members: list[tuple[dict, bytes]] = []
    for index, has_crack in enumerate(cracked, start=1):
        count = int(rng.integers(1, 4)) if has_crack else 0
        image, boxes = _survey_photo(rng, width, height, count)
        entry = {"name": f"survey/DJI_{index:04d}.JPG", "crack": bool(has_crack), "boxes": boxes}
        members.append((entry, _jpeg_bytes(image)))
    broken = _jpeg_bytes(_survey_photo(rng, width, height, 0)[0])[:_BROKEN_BYTES]
    members.append(({"name": BROKEN_MEMBER, "crack": None, "boxes": []}, broken))

    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for entry, data in members:
            info = zipfile.ZipInfo(entry["name"], date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, compress_type=zipfile.ZIP_STORED)
    return [entry for entry, _ in members]
