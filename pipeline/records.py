"""The elements passed between the pipeline's steps and the rows it writes.

One definition of each row, so the writer, the ``--skip-scored`` reader and the report
cannot disagree about a column name or a type.
"""
from __future__ import annotations

import csv
import io
import json
import posixpath
from typing import Any, Iterable, Iterator, NamedTuple

from crackscan import gsd
from crackscan.photo_metadata import COLUMNS as METADATA_FIELDS
from crackscan.photo_metadata import TEXT_COLUMNS, PhotoMetadata

# The crack measurements (crackscan.crack_measure's CrackMeasurement.columns) and the
# path of the image's mask PNG under the output, relative to it (pipeline.masks).
MEASUREMENT_COLUMNS = ("crack_length_px", "crack_width_max_px", "crack_width_median_px",
                       "crack_length_mm", "crack_width_max_mm", "crack_width_median_mm")
MASK_COLUMN = "mask"
# Where --write-masks puts the PNGs under the output.
MASK_FOLDER = "masks"
PREDICTION_FIELDS = ("uri", "label", "crack_probability", "threshold", "width", "height",
                     "tiles", "positive_tiles", "model_version", "scored_at", "sha256",
                     *METADATA_FIELDS, *gsd.COLUMNS, *MEASUREMENT_COLUMNS, MASK_COLUMN)
# Where and when a photo was taken, and its scale, are known only when its camera wrote them
# (or the user gave the scale); a crack is measured only where the mask model found one
# (and in millimetres where the scale is known); a mask is written only with --write-masks;
# rows written before these columns existed lack them: None in JSON lines, an empty cell in
# CSV.
OPTIONAL_FIELDS = frozenset({*METADATA_FIELDS, *gsd.COLUMNS, *MEASUREMENT_COLUMNS,
                             MASK_COLUMN})
FLOAT_FIELDS = frozenset({"crack_probability", "threshold",
                          *(OPTIONAL_FIELDS - TEXT_COLUMNS - gsd.TEXT_COLUMNS
                            - {MASK_COLUMN})})
INT_FIELDS = frozenset({"width", "height", "tiles", "positive_tiles"})
# Finer than any threshold, and short enough that rows can be compared across runs and
# runners: float32 noise from different batch compositions sits far below the sixth decimal.
PROBABILITY_DECIMALS = 6
# Lengths and widths to a hundredth of a pixel (widths are steps of the distance transform,
# lengths sums of 1 and sqrt(2)) and millimetres to a micrometre.
MEASUREMENT_DECIMALS = {"px": 2, "mm": 3}
# "mask": the mask model could not run on a scored image (read again, decoded or inferred);
# "write-mask": its PNG could not be written (pipeline.masks).
MASK_STAGE, WRITE_MASK_STAGE = "mask", "write-mask"
STAGES = ("read", "decode", "tile", "inference", MASK_STAGE, WRITE_MASK_STAGE)
NO_MEASUREMENT = dict.fromkeys((*MEASUREMENT_COLUMNS, MASK_COLUMN))


class SourceImage(NamedTuple):
    """Bytes of one input that still has to be decoded and scored."""

    uri: str
    sha256: str
    data: bytes


class ImageInfo(NamedTuple):
    """What the verdict row needs about an image once its tiles have left for the model."""

    uri: str
    sha256: str
    width: int
    height: int
    tiles: int
    metadata: PhotoMetadata = PhotoMetadata()


class TileKey(NamedTuple):
    """Identifies a tile through RunInference; ``box`` is in original image pixels.

    The only tile of an image carries the image's ``info``: its score alone is the verdict,
    so it needs no regrouping with an info sent separately.
    """

    uri: str
    tile: int
    box: tuple[int, int, int, int]
    tiles: int
    info: ImageInfo | None = None


class TileScore(NamedTuple):
    tile: int
    box: tuple[int, int, int, int]
    crack_probability: float
    # The version of the model file that scored the tile (None: the card's): on a remote
    # runner each worker may run the float or the int8 file (pipeline.runtime_choice).
    model_version: str | None = None


class ScoredImage(NamedTuple):
    """A prediction row and the tile scores behind it (none for a row reused from before).

    ``metadata_warnings`` counts the photo's metadata values refused while decoding: the row
    leaves them out, and the summary reports how many there were, on every runner.
    ``mask_tiles`` counts the tiles the mask model ran on for this image, and
    ``mask_preview`` is its mask shrunk for the report's thumbnail (a PNG, None where no
    mask was made); ``pipeline.masks`` sets both.
    """

    row: dict[str, Any]
    tiles: tuple[TileScore, ...]
    metadata_warnings: int = 0
    mask_tiles: int = 0
    mask_preview: bytes | None = None


def probability(value: float) -> float:
    return round(float(value), PROBABILITY_DECIMALS)


def error_row(uri: str, stage: str, error: str) -> dict[str, str]:
    """An error row; undecodable bytes quoted from a name in the message become ``\\xNN``
    escapes, so the row can be encoded as UTF-8 by every coder and sink."""
    return {"uri": uri, "stage": stage,
            "error": error.encode("utf-8", "backslashreplace").decode("utf-8")}


def tile_rows(image: ScoredImage) -> Iterator[dict[str, Any]]:
    for tile in image.tiles:
        yield {"uri": image.row["uri"], "tile": tile.tile, "box": list(tile.box),
               "crack_probability": tile.crack_probability}


def json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False)


def csv_header() -> str:
    return ",".join(PREDICTION_FIELDS)


def csv_record(values: Iterable[Any]) -> str:
    """One CSV record without its line end; ``None`` is an empty field. The writer quotes a
    field that holds any character of its line terminator, so the terminator is the usual
    one, cut off after: with an empty one a carriage return or newline in a field would not
    be quoted and the record would split across lines."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()[:-2]


def csv_line(row: dict[str, Any]) -> str:
    """A prediction row as one CSV record, in ``PREDICTION_FIELDS`` order."""
    return csv_record(row[field] for field in PREDICTION_FIELDS)


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    typed = {}
    for field in PREDICTION_FIELDS:
        value = row.get(field) if field in OPTIONAL_FIELDS else row[field]
        if field in OPTIONAL_FIELDS and value in (None, ""):
            value = None
        elif field in FLOAT_FIELDS:
            value = float(value)
        elif field in INT_FIELDS:
            value = int(value)
        typed[field] = value
    return typed


def parse_predictions(path: str, text: str) -> Iterator[dict[str, Any]]:
    """Rows of a ``predictions-*`` file written by either ``--format``, with their types;
    a file written before the metadata columns existed gives None in them."""
    if posixpath.basename(path).endswith(".jsonl"):
        # Lines end at "\n" only: ``splitlines`` would also cut at U+2028 and other
        # separators that JSON leaves unescaped inside strings.
        for line in text.split("\n"):
            if line.strip():
                yield _typed(json.loads(line))
    else:
        for row in csv.DictReader(io.StringIO(text, newline="")):
            yield _typed(row)
