"""The model card: everything a scorer needs to know about an exported model, in one file.

``model_card.json`` sits beside ``model.keras``; the scoring pipeline reads class names,
input size, tile size and the decision threshold from it instead of taking them as flags
that could drift from what the model was trained and calibrated with.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any

from apache_beam.io.filesystems import FileSystems

MODEL_FILE = "model.keras"
# Same model converted for the LiteRT runtime; optional (older model folders lack it).
TFLITE_FILE = "model.tflite"
CARD_FILE = "model_card.json"
REQUIRED_FIELDS = ("class_names", "positive_class", "input_size", "tile_size", "threshold")


class ModelCardError(ValueError):
    """A model directory that cannot be scored with: missing, incomplete or tampered."""


def join(directory: str, name: str) -> str:
    return FileSystems.join(directory, name) if "://" in directory else posixpath.join(
        directory, name)


def write_card(directory: str, card: dict[str, Any]) -> str:
    path = join(directory, CARD_FILE)
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(card, indent=2, sort_keys=True).encode() + b"\n")
    return path


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with FileSystems.open(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(directory: str) -> dict[str, Any]:
    """The card of a model directory, checked against the model file it describes."""
    card_path, model_path = join(directory, CARD_FILE), join(directory, MODEL_FILE)
    for path in (card_path, model_path):
        if not FileSystems.exists(path):
            raise ModelCardError(f"{directory}: not a crackscan model directory, "
                                 f"{posixpath.basename(path)} is missing")
    try:
        with FileSystems.open(card_path) as handle:
            card = json.loads(handle.read())
    except ValueError as exc:
        raise ModelCardError(f"{card_path}: not valid JSON: {exc}") from None
    missing = [field for field in REQUIRED_FIELDS if field not in card]
    if missing:
        raise ModelCardError(f"{card_path}: missing fields {missing}")
    expected = card.get("model_sha256")
    if expected and file_sha256(model_path) != expected:
        raise ModelCardError(f"{model_path}: content does not match the sha256 recorded in "
                             f"{CARD_FILE}; the model was changed after export")
    if "tflite_file" in card:
        tflite_path = join(directory, card["tflite_file"])
        if not FileSystems.exists(tflite_path):
            raise ModelCardError(f"{directory}: {CARD_FILE} lists {card['tflite_file']}, "
                                 f"which is missing")
        if file_sha256(tflite_path) != card.get("tflite_sha256"):
            raise ModelCardError(f"{tflite_path}: content does not match the tflite_sha256 "
                                 f"recorded in {CARD_FILE}; it was changed after export")
    return card


def model_version(card: dict[str, Any]) -> str:
    """Short content hash that names the model in every prediction row."""
    return card["model_sha256"][:12]
