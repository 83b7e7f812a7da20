"""``mask_model.tflite`` and the card section that describes it, and attaching both to a
classifier's model folder.

    python -m training.mask_export --mask-dir runs/masks-v1 --model-dir runs/field-v18

A mask model is trained once and may serve several classifiers: the classifier is retrained
more often than the masks are. So training writes the LiteRT file and its card section
(``mask_card.json``, the ``mask_model`` section alone) into the mask model's own folder,
and attaching copies the file beside a classifier's ``model.tflite`` and merges the section
into its ``model_card.json``, after checking the file is the one the section describes and
that both models cut the same tiles. The file ships only if LiteRT's probabilities match
Keras' within :data:`MAX_ABS_DIFF` on real windows, as the classifier's export does.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

import keras
import numpy as np

from crackscan import cli, model_card, verbosity
from training import export_tflite

MASK_FILE = "mask_model.tflite"
MASK_KERAS_FILE = "mask_model.keras"
MASK_CARD_FILE = "mask_card.json"
CARD_KEY = "mask_model"
REQUIRED_KEYS = ("file", "sha256", "tile_size", "threshold")
MAX_ABS_DIFF = export_tflite.MAX_ABS_DIFF


class MaskExportError(ValueError):
    """A mask model folder or a classifier folder that cannot be joined; the message names
    the file and the reason."""


def export(model: keras.Model, output: str, tile_size: int, images: np.ndarray) -> dict:
    """Writes ``mask_model.tflite`` checked against ``model`` on ``images`` (0-255 RGB
    tiles); returns the section's file fields. Raises rather than write a file that gives
    other probabilities than the evaluated model."""
    content = export_tflite.convert(model, tile_size)
    expected = np.asarray(model.predict(images.astype(np.float32), batch_size=16, verbose=0))
    gap = float(np.max(np.abs(export_tflite.predict(content, images.astype(np.float32),
                                                    batch_size=16) - expected)))
    if gap > MAX_ABS_DIFF:
        raise MaskExportError(f"{MASK_FILE}: LiteRT disagrees with the Keras model by "
                              f"{gap:.2e} (> {MAX_ABS_DIFF:g}) on {len(images)} windows; "
                              f"not exported")
    path = os.path.join(output, MASK_FILE)
    with open(path, "wb") as handle:
        handle.write(content)
    return {"file": MASK_FILE, "sha256": model_card.file_sha256(path), "tile_size": tile_size,
            "input": {"shape": [None, tile_size, tile_size, 3], "dtype": "float32",
                      "range": "RGB 0-255, scaled inside"},
            "output": {"shape": [None, tile_size, tile_size, 1], "dtype": "float32",
                       "meaning": "crack probability of each pixel (sigmoid)"},
            "tflite_max_abs_diff": gap}


def write_section(output: str, section: dict) -> str:
    missing = [key for key in REQUIRED_KEYS if key not in section]
    if missing:
        raise MaskExportError(f"{output}/{MASK_CARD_FILE}: the section lacks {missing}")
    path = os.path.join(output, MASK_CARD_FILE)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({CARD_KEY: section}, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return path


def read_section(mask_dir: str) -> dict:
    """The folder's checked section: the keys a reader needs, and a file that matches it."""
    path = os.path.join(mask_dir, MASK_CARD_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            section = json.load(handle)[CARD_KEY]
    except FileNotFoundError:
        raise MaskExportError(f"{mask_dir}: not a mask model folder, {MASK_CARD_FILE} is "
                              f"missing (python -m training.train_masks writes it)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise MaskExportError(f"{path}: not a mask card ({type(exc).__name__}: {exc})") from None
    missing = [key for key in REQUIRED_KEYS if key not in section]
    if missing:
        raise MaskExportError(f"{path}: the {CARD_KEY} section lacks {missing}")
    if not model_card.plain_file_name(section["file"]):
        raise MaskExportError(f"{path}: file {section['file']!r} is not a file name inside "
                              f"the folder")
    tflite = os.path.join(mask_dir, section["file"])
    if not os.path.isfile(tflite):
        raise MaskExportError(f"{tflite}: missing; the card lists it")
    if model_card.file_sha256(tflite) != section["sha256"]:
        raise MaskExportError(f"{tflite}: content does not match the sha256 in {path}; the "
                              f"file was changed after export")
    return section


def attach(mask_dir: str, model_dir: str) -> dict:
    """Copies the mask model into a classifier's folder and merges its section into the
    classifier's card; returns that card."""
    section = read_section(mask_dir)
    try:
        card = model_card.read_card(model_dir)
    except model_card.ModelCardError as exc:
        raise MaskExportError(str(exc)) from None
    if int(card["tile_size"]) != int(section["tile_size"]):
        raise MaskExportError(f"{model_dir}/{model_card.CARD_FILE}: tiles of "
                              f"{card['tile_size']} px, but the mask model in {mask_dir} "
                              f"takes {section['tile_size']} px tiles")
    shutil.copyfile(os.path.join(mask_dir, section["file"]),
                    os.path.join(model_dir, section["file"]))
    card = card | {CARD_KEY: section}
    model_card.write_card(model_dir, card)
    return card


def parser() -> argparse.ArgumentParser:
    p = cli.command_parser("training.mask_export", __doc__.split("\n\n")[0])
    p.add_argument("--mask-dir", required=True,
                   help="mask model folder written by python -m training.train_masks")
    p.add_argument("--model-dir", required=True,
                   help="classifier model folder to attach it to (holds model_card.json)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse_args(parser(), argv)
    verbosity.configure(argv)
    with cli.one_line_errors("training.mask_export", MaskExportError, OSError):
        card = attach(args.mask_dir, args.model_dir)
    section = card[CARD_KEY]
    print(f"{args.model_dir}: {section['file']} (sha256 {section['sha256'][:12]}, threshold "
          f"{section['threshold']:.2f}) attached; {model_card.CARD_FILE} updated")
    return card


if __name__ == "__main__":
    main()
