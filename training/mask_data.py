"""Crack-mask windows of the field photos, cut exactly as the classifier's data set cut them.

The mask model must learn from the windows the classifier learnt from and be judged on the
photos the classifier was judged on, or its test figures could count photos the classifier
trained on. A data set built by :mod:`training.build_dataset` holds the split (its shard
names) and each window's photo uri, box and label, but not the masks. So each photo of a
mask source is read again from its uri, cut by the same plan (:func:`crackscan.tiles.plan_tiles`
at the manifest's tile size and stride) and labelled by the same rule
(:mod:`training.windows`), and each window's crack mask is cut from the mask on the same
canvas. Joints (mask value 128) are background: a look-alike, not a crack. A window of the
data set that the cut does not give back stops the run, naming the photo: the files on disk
are not the ones the data set was built from.
"""
from __future__ import annotations

import collections
import dataclasses
import posixpath
from typing import Collection, Iterable

import numpy as np
import tensorflow as tf

from crackscan import sources as source_files
from crackscan.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_rgb
from crackscan.labels import EXCLUDED, NEGATIVE, POSITIVE
from crackscan.tiles import TilePlan, plan_tiles
from training import build_dataset, input_pipeline, tfrecords, windows
from training.input_pipeline import DataError

SPLITS = ("train", "val", "test")
MASK_KIND = build_dataset.MASKS
RECORD_FIELDS = {name: tfrecords.FEATURES[name] for name in
                 ("image/uri", "image/source", "image/box", "image/label")}


@dataclasses.dataclass(frozen=True)
class DataWindow:
    """One window as the data set records it: enough to find it again in its photo."""

    box: tuple[int, int, int, int]
    label: int


@dataclasses.dataclass(frozen=True)
class MaskPhoto:
    """A photo of a mask source in the data set, with its split and its recorded windows."""

    uri: str
    source: str
    split: str
    windows: tuple[DataWindow, ...]


@dataclasses.dataclass(frozen=True)
class MaskWindow:
    """A window's pixels, its crack mask (True = crack; joints are not) and its label."""

    pixels: np.ndarray
    crack: np.ndarray
    label: int
    box: tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class PhotoPixels:
    """A whole photo, its crack mask and the plan it is tiled by."""

    photo: MaskPhoto
    rgb: np.ndarray
    mask: np.ndarray
    plan: TilePlan

    @property
    def crack(self) -> np.ndarray:
        return self.mask >= windows.CRACK_MIN


def mask_sources(manifest: dict) -> list[str]:
    """The names of the data set's mask sources, in the manifest's order."""
    return [source["name"] for source in manifest["sources"] if source["kind"] == MASK_KIND]


def dataset_photos(data_dir: str, wanted: Collection[str] | None = None) -> list[MaskPhoto]:
    """Every photo of the data set's mask sources (or of ``wanted`` among them), each with
    the split its shards put it in; read without decoding a pixel."""
    manifest = input_pipeline.read_manifest(data_dir)
    names = mask_sources(manifest)
    unknown = sorted(set(wanted or ()) - set(names))
    if unknown:
        raise DataError(f"{data_dir}/manifest.json: no mask source named {', '.join(unknown)} "
                        f"(its mask sources: {', '.join(names) or 'none'})")
    chosen = set(wanted or names)
    found: dict[tuple[str, str], list[DataWindow]] = collections.defaultdict(list)
    origin: dict[str, tuple[str, str]] = {}
    for split in SPLITS:
        records = tf.data.TFRecordDataset(input_pipeline.shard_files(data_dir, split))
        parsed = records.map(lambda r: tf.io.parse_single_example(r, RECORD_FIELDS),
                             num_parallel_calls=tf.data.AUTOTUNE)
        for record in parsed.as_numpy_iterator():
            source = record["image/source"].decode()
            if source not in chosen:
                continue
            uri = record["image/uri"].decode()
            origin[uri] = (source, split)
            found[(uri, split)].append(DataWindow(tuple(int(v) for v in record["image/box"]),
                                                  int(record["image/label"])))
    return [MaskPhoto(uri, origin[uri][0], split, tuple(cut))
            for (uri, split), cut in sorted(found.items())]


def mask_path(uri: str) -> str:
    """``<source>/masks/<stem>.png`` beside the photo's ``<source>/images/<stem>.*``."""
    path, _, _ = source_files.split_uri(uri)
    folder, name = posixpath.split(path)
    stem = posixpath.splitext(name)[0]
    return posixpath.join(posixpath.dirname(folder), "masks", stem + build_dataset.MASK_SUFFIX)


def read_photo(photo: MaskPhoto, tile_size: int, stride: int,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> PhotoPixels:
    """The photo and its mask as the data set read them, or :class:`DataError` naming the
    file and the reason."""
    path, _, _ = source_files.split_uri(photo.uri)
    try:
        rgb = decode_rgb(source_files.read_file(path), max_pixels)
        height, width = rgb.shape[:2]
        mask = windows.decode_mask(source_files.read_file(mask_path(photo.uri)),
                                   (width, height), max_pixels)
    except (DecodeError, OSError) as exc:
        raise DataError(f"{photo.uri}: cannot read the photo or its mask "
                        f"{mask_path(photo.uri)}: {exc}") from None
    return PhotoPixels(photo, rgb, mask, plan_tiles(width, height, tile_size, stride,
                                                    max_pixels))


def tile_masks(pixels: PhotoPixels) -> list[np.ndarray]:
    """The crack mask of each tile of the photo's plan, in the plan's order."""
    canvas = pixels.plan.canvas(pixels.mask, mask=True) >= windows.CRACK_MIN
    size = pixels.plan.tile_size
    return [canvas[y0:y0 + size, x0:x0 + size] for _, x0, y0 in pixels.plan.origins()]


def photo_windows(pixels: PhotoPixels) -> list[MaskWindow]:
    """The data set's windows of the photo with their crack masks. A clear crop (a box off
    the tiling: :func:`training.windows.clear_crop`) has no crack within 16 px by its rule,
    so its mask is empty."""
    cut = list(windows.windows(pixels.plan, pixels.rgb, pixels.mask))
    by_box = {w.box: MaskWindow(w.pixels, crack, w.label, w.box)
              for w, crack in zip(cut, tile_masks(pixels))}
    crop = None
    result = []
    for recorded in pixels.photo.windows:
        window = by_box.get(recorded.box)
        if window is None:
            crop = crop or windows.clear_crop(pixels.plan, pixels.rgb, pixels.mask, len(cut))
            if crop is None or crop.box != recorded.box:
                raise DataError(f"{pixels.photo.uri}: the data set holds a window at "
                                f"{recorded.box} that cutting the photo does not give; the "
                                f"photo or its mask changed since the data set was built")
            window = MaskWindow(crop.pixels, np.zeros(crop.pixels.shape[:2], bool),
                                NEGATIVE, crop.box)
        if window.label != recorded.label:
            raise DataError(f"{pixels.photo.uri}: window {recorded.box} is labelled "
                            f"{recorded.label} in the data set but {window.label} by its "
                            f"mask; the mask changed since the data set was built")
        result.append(window)
    return result


def sample_windows(photos: Iterable[MaskPhoto], cracked: int, intact: int, seed: int
                   ) -> dict[str, list[tuple[MaskPhoto, DataWindow]]]:
    """Per source, up to ``cracked`` Positive and ``intact`` Negative windows drawn at
    random: every source's cracks weigh alike however many windows it has (wallseg has 15
    times uav75's), and intact windows teach the model to stay quiet on intact concrete."""
    rng = np.random.default_rng(seed)
    pools: dict[tuple[str, int], list[tuple[MaskPhoto, DataWindow]]] = collections.defaultdict(list)
    for photo in photos:
        for window in photo.windows:
            if window.label != EXCLUDED:
                pools[(photo.source, window.label)].append((photo, window))
    chosen: dict[str, list[tuple[MaskPhoto, DataWindow]]] = collections.defaultdict(list)
    for (source, label), pool in sorted(pools.items()):
        cap = cracked if label == POSITIVE else intact
        picks = rng.permutation(len(pool))[:cap]
        chosen[source] += [pool[i] for i in sorted(picks)]
    return dict(chosen)


def window_arrays(picked: list[tuple[MaskPhoto, DataWindow]], tile_size: int, stride: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, S, S, 3) uint8 and crack masks (N, S, S) uint8 (1 = crack) of the picked
    windows, each photo read once."""
    by_photo: dict[str, list[DataWindow]] = collections.defaultdict(list)
    photos = {}
    for photo, window in picked:
        by_photo[photo.uri].append(window)
        photos[photo.uri] = photo
    images, cracks = [], []
    for uri, wanted in by_photo.items():
        photo = dataclasses.replace(photos[uri], windows=tuple(wanted))
        for window in photo_windows(read_photo(photo, tile_size, stride)):
            images.append(window.pixels)
            cracks.append(window.crack.astype(np.uint8))
    if not images:
        raise DataError("no windows to train the mask model on: the chosen mask sources "
                        "have no labelled windows in this split")
    return np.stack(images), np.stack(cracks)
