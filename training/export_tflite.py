"""Export ``model.tflite``: the Keras model converted for the LiteRT runtime, checked.

    python -m training.export_tflite --model MODEL_DIR [--images DIR] [--int8 DATA_DIR]

adds it to a model folder exported before this step existed and updates its card; a folder
whose card already lists one keeps it. With ``--int8``, also ``model_int8.tflite``.

The model keeps its preprocessing inside (resize and MobileNetV2 scaling), so LiteRT is
fed the same 0-255 RGB pixels as ``model.keras`` (input: ``training.converter``). The file
ships only if its probabilities match Keras within ``MAX_ABS_DIFF`` on real images.

``--int8`` (``--int8`` on training too) quantizes the model to int8 on the data set it was
trained on (``training.int8_export``): quantization error is not bounded like the float
file's, so it is listed in the card only if it passes a gate against the float file on every
source's test windows; the card records the gate's figures either way.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from crackscan import cli, model_card, tiles, verbosity
from crackscan.decode import IMAGE_SUFFIXES, DecodeError, decode_rgb
from crackscan.tflite_model import TFLiteClassifier
from training import input_pipeline, int8_export
from training.converter import saved_model_converter

MAX_ABS_DIFF = 1e-4

log = logging.getLogger("crackscan.export_tflite")


def convert(model: keras.Model, tile_size: int) -> bytes:
    """Float32 flatbuffer with input ``[batch, tile_size, tile_size, 3]``."""
    with saved_model_converter(model, tile_size) as converter:
        return converter.convert()


def predict(content: bytes, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """LiteRT's class probabilities for 0-255 RGB images, in batches."""
    classifier = TFLiteClassifier(content, threads=os.cpu_count() or 1)
    return np.concatenate([classifier.predict(images[i:i + batch_size])
                           for i in range(0, len(images), batch_size)])


def max_abs_diff(content: bytes, images: np.ndarray, expected: np.ndarray) -> float:
    """Largest gap between LiteRT's probabilities and ``expected`` (same shape)."""
    return float(np.max(np.abs(predict(content, images) - expected)))


def export(model: keras.Model, output: str, card: dict, images: np.ndarray,
           expected: np.ndarray) -> dict:
    """Writes ``model.tflite`` and returns the card that lists it (the caller writes it).

    Raises instead of shipping a file that scores differently from the evaluated model.
    """
    tile_size = int(card["tile_size"])
    content = convert(model, tile_size)
    gap = max_abs_diff(content, images, expected)
    if gap > MAX_ABS_DIFF:
        raise RuntimeError(f"model.tflite disagrees with the Keras model by {gap:.2e} "
                           f"(> {MAX_ABS_DIFF:g}) on {len(images)} images; not exported")
    path = model_card.join(output, model_card.TFLITE_FILE)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(content)
    return card | {
        "tflite_file": model_card.TFLITE_FILE,
        "tflite_sha256": model_card.file_sha256(path),
        "tflite_input": {"shape": [None, tile_size, tile_size, 3], "dtype": "float32",
                         "range": "RGB 0-255, resized and scaled inside"},
        "tflite_max_abs_diff": gap,
        "versions": card.get("versions", {}) | {
            "ai_edge_litert": importlib.metadata.version("ai-edge-litert")},
    }


def sample_images(folder: Path, tile_size: int, count: int) -> np.ndarray:
    """``count`` images spread evenly over the sorted files (so every class is in), as
    tile-sized uint8 RGB: what the pipeline feeds. A file that does not decode (a survey
    folder may hold a truncated upload) is skipped with a warning naming it."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    picked = files[::max(1, len(files) // count)][:count]
    images = []
    for path in picked:
        try:
            rgb = decode_rgb(path.read_bytes())
        except DecodeError as exc:
            log.warning("%s: not used to check the export: %s", path, exc)
            continue
        if rgb.shape[:2] != (tile_size, tile_size):
            rgb = tiles.resize(rgb, tile_size, tile_size)
        images.append(rgb)
    if not images:
        raise FileNotFoundError(f"{folder}: no .jpg or .png images that decode, to check the "
                                f"export on")
    return np.stack(images)


def add_to_model_dir(model_dir: str, images_dir: Path, count: int = 64,
                     int8_data: str | None = None) -> dict:
    """Converts the folder's ``model.keras`` unless the card already lists a (checked)
    ``.tflite``, checks it against Keras and updates the card; with ``int8_data`` (the
    data set the model was trained on) also an int8 model, gated against the float file."""
    card = model_card.read_card(model_dir)
    model = keras.saving.load_model(model_card.join(model_dir, model_card.MODEL_FILE),
                                    compile=False, safe_mode=True)
    if "tflite_file" not in card:
        images = sample_images(images_dir, int(card["tile_size"]), count)
        expected = np.asarray(model.predict_on_batch(images.astype(np.float32)))
        card = export(model, model_dir, card, images, expected)
    if int8_data:
        with tf.io.gfile.GFile(model_card.join(model_dir, card["tflite_file"]), "rb") as handle:
            float_content = handle.read()
        card = int8_export.export_int8(model, model_dir, card, int8_data, float_content)
    model_card.write_card(model_dir, card)
    return card


def parser() -> argparse.ArgumentParser:
    parser = cli.command_parser("training.export_tflite", __doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder with model.keras")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/concrete"),
                        help="folder of real images to check LiteRT against Keras on "
                             "(default: ../shared/data/concrete)")
    parser.add_argument("--count", type=int, default=64, help="images checked (default 64)")
    parser.add_argument("--int8", metavar="DATA_DIR",
                        help="also model_int8.tflite, quantized on the data set the model "
                             "was trained on (calibrated on its train split, float layers "
                             "chosen on val) and listed in the card only if, on every "
                             "source's test windows, it loses under 0.1 point of accuracy "
                             "and flips under 0.2%% of the float file's verdicts; the card "
                             "records the figures either way (default: no int8 model)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse_args(parser(), argv)
    verbosity.configure(argv)
    with cli.one_line_errors("training.export_tflite", input_pipeline.DataError,
                             model_card.ModelCardError, FileNotFoundError):
        card = add_to_model_dir(args.model, args.images, args.count, args.int8)
    print(f"{model_card.join(args.model, card['tflite_file'])}: max abs diff to Keras "
          f"{card['tflite_max_abs_diff']:.2e}; card updated")
    if args.int8:
        print(int8_export.summary(card))
    return card



console = cli.console_script(main)


if __name__ == "__main__":
    main()
