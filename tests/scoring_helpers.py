"""Helpers shared by the test modules that run ``pipeline.score`` end to end.

Import what a module needs (``from scoring_helpers import score, read_predictions``); the
``tiny_model_dir`` fixture built from ``tiny_model`` lives in ``conftest.py``.
"""
from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from pathlib import Path

import keras
from PIL import Image

from crackscan.model_card import file_sha256, write_card
from pipeline.records import PREDICTION_FIELDS
from pipeline.score import run

UTF8_NAMES = 0x800  # zip flag: member names are UTF-8, not code page 437


# A pool of worker processes, the DirectRunner's default here, costs ~4 s to start; the
# suite's many small runs take one process unless a test chooses. test_pipeline_score runs
# the default.
IN_MEMORY = "--direct_running_mode=in_memory"


def score(*argv: str | Path) -> dict:
    args = [str(arg) for arg in argv]
    if not any(arg.startswith(("--direct_running_mode", "--runner")) for arg in args):
        args.append(IN_MEMORY)
    summary = run(args)
    assert summary is not None
    return summary


def read_predictions(out: Path) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    shards = sorted(out.glob("predictions-*.csv"))
    assert shards, f"no predictions-*.csv in {out}"
    for shard in shards:
        with shard.open(newline="") as handle:
            reader = csv.DictReader(handle)
            assert tuple(reader.fieldnames) == PREDICTION_FIELDS
            for row in reader:
                assert row["uri"] not in rows, f"{row['uri']} has two rows"
                rows[row["uri"]] = row
    return rows


def read_jsonl(out: Path, name: str) -> list[dict]:
    shards = sorted(out.glob(f"{name}-*.jsonl"))
    assert shards, f"no {name}-*.jsonl in {out}"
    return [json.loads(line) for shard in shards for line in shard.read_text().splitlines()]


def save_model(model: keras.Model, directory: Path, tile_size: int = 227) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / "model.keras")
    write_card(str(directory), {
        "class_names": ["Negative", "Positive"], "positive_class": "Positive",
        "input_size": 64, "tile_size": tile_size, "threshold": 0.5,
        "model_sha256": file_sha256(str(directory / "model.keras"))})
    return directory


def tiny_model(*extra_layers: keras.layers.Layer) -> keras.Model:
    inputs = keras.Input((None, None, 3))
    x = inputs
    for layer in extra_layers:
        x = layer(x)
    x = keras.layers.Resizing(64, 64)(x)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def concrete(root: Path, label: str, count: int) -> list[Path]:
    """The first ``count`` real concrete patches of a class, by name, under ``root`` (the
    checked-in ``real_data`` fixture, or ``shared_dir``: the same files, as many as there are).
    """
    paths = sorted((root / "data" / "concrete" / label).glob("*.jpg"))[:count]
    assert len(paths) == count, f"{root} holds {len(paths)} {label} patches, not {count}"
    return paths


def field_photos(root: Path, source: str, count: int) -> list[Path]:
    """The first ``count`` real field photos of a mask source, by name, under ``root``."""
    paths = sorted((root / "data" / "field" / source / "images").glob("*.jpg"))[:count]
    assert len(paths) == count, f"{root} holds {len(paths)} {source} photos, not {count}"
    return paths


def copy_files(paths: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in paths:
        copy = folder / path.name
        copy.write_bytes(path.read_bytes())
        copies.append(copy)
    return copies


def png_declaring(width: int, height: int) -> bytes:
    """A real PNG header that declares a huge image: a decompression bomb's first bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def zip_archive(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip written field by field from ``(name, raw deflate, declared size, CRC-32)``, so
    a member can declare a size its data does not have."""
    body, directory = io.BytesIO(), []
    for name, data, size, crc in entries:
        offset, encoded_name = body.tell(), name.encode()
        body.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, UTF8_NAMES, 8, 0, 0, crc,
                               len(data), size, len(encoded_name), 0) + encoded_name + data)
        directory.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, UTF8_NAMES, 8,
                                     0, 0, crc, len(data), size, len(encoded_name), 0, 0, 0,
                                     0, 0, offset) + encoded_name)
    listing = b"".join(directory)
    return body.getvalue() + listing + struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(listing),
        body.tell(), 0)


def zip_member(name: str, data: bytes) -> tuple[str, bytes, int, int]:
    return name, deflated(data), len(data), zlib.crc32(data)
