"""Tiles a person should label, written where the dataset builder takes them back.

``--export-review DIR`` writes, for every scored photo, the tiles whose labels would teach
the model most, as PNG files a person sorts by eye:

    DIR/review.csv            one row per tile written (``REVIEW_FIELDS``)
    DIR/manifest.csv          ``name,group``: each tile's file stem and its photo's sha256
    DIR/unsorted/NAME.png     the tile's pixels

Moving each PNG into ``DIR/Positive/`` or ``DIR/Negative/`` makes DIR a class-folder source:
``crackscan-build-dataset --source DIR`` takes it as it is. The two CSVs and anything left
in ``unsorted/`` sit outside the class folders, so the builder lists them as skipped ("not
inside a class folder") and builds from the sorted tiles; a tile forgotten in ``unsorted/``
shows up there by name. ``manifest.csv`` is the builder's own grouping file: the tiles of
one photo overlap (by 1/4 tile at the default stride, by all but a few pixels on a photo
just over a tile), the near-copy hash joins only some of them, and a tile in train beside
its neighbour in test would measure memory; one group per photo keeps them in one split.

Which tiles (:func:`review_tiles`): on a Positive photo, every tile at or above the threshold,
highest first, because a flag is what an inspector acts on and the tiles it rests on (the
photo rule's top ``tiles_needed``) are either its proof or the hard negatives training lacks;
then, on every photo, the tiles nearest the threshold on either side, where the model is
least sure. ``--review-per-photo`` caps the tiles of one photo (default 8: a verdict rests on
at most 5 tiles, so 8 holds them and a few borderline ones). It is a flag because photos
differ by orders of magnitude: a lab patch is one tile, a drone photo hundreds.

Pixels: the tile's box of the photo as decoded for scoring, at the photo's own resolution.
Where the photo was smaller than a tile the scorer scaled it up first; the box (in original
pixels) is exported, not the scaled canvas: the label belongs to what the camera took, the
model's own resizing layer scales a class-folder image up in training as the scorer scaled
it (up to interpolation), and the scaled copy would store up to 16 times the pixels with one
interpolation baked in.

Photos are read again by uri (:mod:`pipeline.reread`), the photos of one archive in one
pass over it: nearly every scored photo has tiles to export. They are decoded with
:func:`crackscan.decode.decode_rgb` as scoring did. A photo that cannot be read, decoded or
written is counted (``review_photos_failed``) and logged with its uri and reason; it never fails the
run, whose predictions are already complete without it. Photos carried over by
``--skip-scored`` have no tile scores in this run, so none of their tiles are exported.
"""
from __future__ import annotations

import io
import logging
import posixpath
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from PIL import Image

from crackscan.decode import decode_rgb
from crackscan.model_card import join
from pipeline.file_names import tile_file_name
from pipeline.records import ScoredImage, TileScore, csv_record
from pipeline.reread import container, photo_bytes
from pipeline.summary import write_atomically

REVIEW_FILE = "review.csv"
# training.build_dataset reads a source's groups from this file and these columns.
GROUPS_FILE = "manifest.csv"
GROUP_FIELDS = ("name", "group")
UNSORTED = "unsorted"
REVIEW_FIELDS = ("file", "uri", "tile", "x0", "y0", "x1", "y1", "crack_probability",
                 "threshold", "label", "latitude", "longitude")


def review_tiles(image: ScoredImage, positive_class: str, per_photo: int
                 ) -> tuple[TileScore, ...]:
    """The photo's tiles worth a person's look, most telling first, at most ``per_photo``."""
    threshold = image.row["threshold"]
    flagged = image.row["label"] == positive_class

    def priority(tile: TileScore) -> tuple[int, float, int]:
        if flagged and tile.crack_probability >= threshold:
            return 0, -tile.crack_probability, tile.tile
        return 1, abs(tile.crack_probability - threshold), tile.tile

    return tuple(sorted(image.tiles, key=priority)[:per_photo])


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def existing_export(directory: str) -> str | None:
    """A file of an earlier export in ``directory``, which a new one would mix with."""
    for pattern in (join(directory, REVIEW_FILE), join(directory, f"{UNSORTED}/*")):
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception:  # Beam raises BeamIOError when a pattern matches nothing.
            matched = []
        if matched:
            return matched[0].path
    return None


class WriteReviewTilesFn(beam.DoFn):
    """``(container, [ScoredImage with its chosen tiles])`` to one ``review.csv`` line, and
    one ``manifest.csv`` line (tagged ``GROUPS_FILE``), per PNG written under
    ``DIR/unsorted/``; a photo that fails is counted and logged."""

    def __init__(self, directory: str, max_pixels: int) -> None:
        self._directory = directory
        self._max_pixels = max_pixels
        self._written = Metrics.counter("crackscan", "review_tiles_written")
        self._failed = Metrics.counter("crackscan", "review_photos_failed")

    def process(self, grouped: tuple[str, Iterable[ScoredImage]]
                ) -> Iterator[str | TaggedOutput]:
        container_uri, images = grouped
        by_uri = {image.row["uri"]: image for image in images}
        for uri, data in photo_bytes(container_uri, set(by_uri)):
            image, lines = by_uri[uri], []
            try:
                if isinstance(data, Exception):
                    raise data
                rgb = decode_rgb(data, self._max_pixels)
                for tile in image.tiles:
                    lines.append(self._write(image.row, tile, rgb))
            except Exception as exc:  # One photo's tiles must not cost the run.
                self._failed.inc()
                logging.warning("review export: %s: %s: %s (%d of its %d tiles written)",
                                uri, type(exc).__name__, exc, len(lines), len(image.tiles))
            # The rows of the tiles written before a failure, so review.csv matches the files.
            self._written.inc(len(lines))
            for review, group in lines:
                yield review
                yield TaggedOutput(GROUPS_FILE, group)

    def _write(self, row: dict[str, Any], tile: TileScore, rgb: np.ndarray
               ) -> tuple[str, str]:
        """Writes one tile's PNG; returns its review.csv and manifest.csv lines."""
        x0, y0, x1, y1 = tile.box
        name = tile_file_name(row["uri"], tile.tile)
        write_atomically(join(self._directory, f"{UNSORTED}/{name}"),
                         png_bytes(rgb[y0:y1, x0:x1]))
        return (csv_record([name, row["uri"], tile.tile, x0, y0, x1, y1,
                          tile.crack_probability, row["threshold"], row["label"],
                          row.get("latitude"), row.get("longitude")]),
                csv_record([posixpath.splitext(name)[0], row["sha256"]]))


class ExportReview(beam.PTransform):
    """Scored images to ``DIR/unsorted/*.png``, ``DIR/review.csv`` and ``DIR/manifest.csv``;
    outputs the CSVs' names, so whoever waits for them (the summary) waits for every tile."""

    def __init__(self, directory: str, positive_class: str, per_photo: int,
                 max_pixels: int) -> None:
        super().__init__()
        self._directory = directory
        self._positive_class = positive_class
        self._per_photo = per_photo
        self._max_pixels = max_pixels

    def expand(self, scored: beam.PCollection) -> beam.PCollection:
        positive_class, per_photo = self._positive_class, self._per_photo
        lines = (scored
                 | "ChooseTiles" >> beam.Map(lambda image: image._replace(
                     tiles=review_tiles(image, positive_class, per_photo)))
                 | "SomeTiles" >> beam.Filter(lambda image: bool(image.tiles))
                 | "ByContainer" >> beam.Map(
                     lambda image: (container(image.row["uri"]), image))
                 | "GroupByContainer" >> beam.GroupByKey()
                 | "WriteTiles" >> beam.ParDo(WriteReviewTilesFn(
                     self._directory, self._max_pixels)).with_outputs(GROUPS_FILE,
                                                                       main=REVIEW_FILE))
        return ((lines[REVIEW_FILE] | "WriteReviewCsv" >> self._csv(REVIEW_FILE, REVIEW_FIELDS),
                 lines[GROUPS_FILE] | "WriteGroupsCsv" >> self._csv(GROUPS_FILE, GROUP_FIELDS))
                | "ExportFiles" >> beam.Flatten())

    def _csv(self, name: str, fields: tuple[str, ...]) -> beam.io.WriteToText:
        """One file of exactly that name, header included even when no tile was chosen."""
        return beam.io.WriteToText(join(self._directory, name), num_shards=1,
                                   shard_name_template="", header=",".join(fields))
