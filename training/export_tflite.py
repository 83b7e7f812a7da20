"""Export ``model.tflite``: the Keras model converted for the LiteRT runtime, checked.

    python -m training.export_tflite --model MODEL_DIR [--images DIR] [--int8-data DATA_DIR]

adds it to a model folder exported before this step existed and updates its card.

The model keeps its preprocessing inside (resize and MobileNetV2 scaling), so LiteRT is
fed the same 0-255 RGB pixels as ``model.keras``. The input is fixed at the card's
``tile_size`` square (the batch stays dynamic): the scoring pipeline only ever feeds
tiles of that size, and a fixed shape lets the converter fold the resize into a static op.
The file ships only if its probabilities match Keras within ``MAX_ABS_DIFF`` on real images.

Optionally (``--int8`` on training, ``--int8-data`` here) a full-integer
``model_int8.tflite`` calibrated on training images: quantisation error is not bounded like
the float file's, so it is judged by its accuracy on the test split beside the float
model's, and written (and marked usable) only if it loses less than 0.1 point.
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from crackscan import cli, model_card
from crackscan.decode import IMAGE_SUFFIXES
from crackscan.tflite_model import TFLiteClassifier
from training.export import native_batch

MAX_ABS_DIFF = 1e-4
INT8_FILE = "model_int8.tflite"
INT8_MAX_ACCURACY_LOSS = 0.001  # 0.1 percentage point

log = logging.getLogger("crackscan.export_tflite")


def convert(model: keras.Model, tile_size: int,
            calibration: np.ndarray | None = None) -> bytes:
    """Flatbuffer with input ``[batch, tile_size, tile_size, 3]``: float32, or full-integer
    (uint8 pixels in, uint8 probabilities out) calibrated on ``calibration`` images.

    Through a SavedModel: converting a Keras 3 model's concrete function directly loses its
    variables (the file comes out without weights and returns NaN).
    """
    signature = tf.TensorSpec([None, tile_size, tile_size, 3], tf.float32, name="image")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda image: model(image, training=False),
                         input_signature=[signature])
    with tempfile.TemporaryDirectory() as saved_model:
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        if calibration is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [image[None].astype(np.float32)] for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        return converter.convert()


def predict(content: bytes, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """LiteRT's class probabilities for 0-255 RGB images, in batches."""
    classifier = TFLiteClassifier(content, threads=os.cpu_count() or 1)
    return np.concatenate([classifier.predict(images[i:i + batch_size])
                           for i in range(0, len(images), batch_size)])


def export_int8(model: keras.Model, output: str, card: dict, data_dir: str,
                evaluated: dict[str, tuple[int, float]], calibration_count: int = 200) -> dict:
    """Calibrates on training images, then measures on the test images against the float
    model's evaluation there (``evaluated``: sha256 -> label, positive probability), and
    writes the file only if it is usable. Returns the card with an ``int8`` entry."""
    calibration, _ = native_batch(data_dir, "train", calibration_count)
    content = convert(model, int(card["tile_size"]), calibration)
    test_images, hashes = native_batch(data_dir, "test", len(evaluated))
    labels = np.array([evaluated[h][0] for h in hashes])
    float_positive = np.array([evaluated[h][1] for h in hashes])
    positive = card["class_names"].index(card["positive_class"])
    threshold = float(card["threshold"])
    int8_positive = predict(content, test_images)[:, positive]
    float_accuracy = float(np.mean((float_positive >= threshold) == labels))
    int8_accuracy = float(np.mean((int8_positive >= threshold) == labels))
    report = {"test_accuracy": int8_accuracy, "float_test_accuracy": float_accuracy,
              "test_images": len(test_images), "calibration_images": len(calibration),
              "max_abs_diff_to_float": float(np.max(np.abs(int8_positive - float_positive))),
              "usable": float_accuracy - int8_accuracy < INT8_MAX_ACCURACY_LOSS}
    if report["usable"]:
        path = model_card.join(output, INT8_FILE)
        with tf.io.gfile.GFile(path, "wb") as handle:
            handle.write(content)
        report |= {"file": INT8_FILE, "sha256": model_card.file_sha256(path)}
    log.info("int8: test accuracy %.4f vs float %.4f on %d images: %s", int8_accuracy,
             float_accuracy, len(test_images), "written" if report["usable"] else
             "not written, it loses too much")
    return card | {"int8": report}


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
    tile-sized uint8 RGB: what the pipeline feeds."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no .jpg or .png images to check the export on")
    picked = files[::max(1, len(files) // count)][:count]
    images = []
    for path in picked:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if rgb.size != (tile_size, tile_size):
                rgb = rgb.resize((tile_size, tile_size), Image.Resampling.BILINEAR)
            images.append(np.asarray(rgb))
    return np.stack(images)


def add_to_model_dir(model_dir: str, images_dir: Path, count: int = 64,
                     int8_data: str | None = None) -> dict:
    """Converts the folder's ``model.keras``, checks it against Keras and updates the card;
    with ``int8_data`` (the training TFRecords) also measures a full-integer model."""
    card = model_card.read_card(model_dir)
    model = keras.saving.load_model(model_card.join(model_dir, model_card.MODEL_FILE),
                                    compile=False, safe_mode=True)
    images = sample_images(images_dir, int(card["tile_size"]), count)
    expected = np.asarray(model.predict_on_batch(images.astype(np.float32)))
    card = export(model, model_dir, card, images, expected)
    if int8_data:
        with tf.io.gfile.GFile(model_card.join(model_dir, "test_predictions.json")) as handle:
            evaluated = {row["sha256"]: (row["label"], row["crack_probability"])
                         for row in json.load(handle)}
        card = export_int8(model, model_dir, card, int8_data, evaluated)
    model_card.write_card(model_dir, card)
    return card


def main(argv: list[str] | None = None) -> dict:
    parser = cli.command_parser("training.export_tflite", __doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder with model.keras")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/concrete"),
                        help="folder of real images to check LiteRT against Keras on "
                             "(default: ../shared/data/concrete)")
    parser.add_argument("--count", type=int, default=64, help="images checked (default 64)")
    parser.add_argument("--int8-data", metavar="DATA_DIR",
                        help="also a full-integer model, calibrated on this training data "
                             "set's train split and measured on its test split")
    args = cli.parse_args(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    card = add_to_model_dir(args.model, args.images, args.count, args.int8_data)
    print(f"{model_card.join(args.model, card['tflite_file'])}: max abs diff to Keras "
          f"{card['tflite_max_abs_diff']:.2e} on {args.count} images; card updated")
    return card



console = cli.console_script(main)


if __name__ == "__main__":
    main()
