"""A stand-in crack-mask model: a real LiteRT file of the mask contract, with hand-set weights.

The trained mask model (``mask_model`` in a card, ``training/``) is what ships; until a model
folder has one, the pipeline's mask path still has to be run and timed on a real model. This
one marks pixels darker than their neighbourhood, as a crack is on concrete: grey level, a
box mean over ``WINDOW`` pixels (wider than the widest crack it must fill, or a wide crack's
centre would be compared with itself), and a logistic of how much darker than that mean each
pixel is. Deterministic, no training, converted by training's own converter, so it is fed and
read exactly as a trained mask model is (input float32 ``[N, S, S, 3]`` RGB 0-255, output
float32 ``[N, S, S, 1]`` crack probability).

Benchmarks and tests use it; it is not shipped: it also marks dark stains and shadows.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

MASK_FILE = "mask_model.tflite"
# A box of 63 px covers a 16 px crack four times over, so its centre stays darker than the
# box mean (by 3/4 of the crack's contrast for a straight one).
WINDOW = 63
# Grey levels darker than the box mean at which a pixel is half likely a crack, and how
# sharply the probability rises around it: real concrete's pits and grain stay under it,
# and a pixel half covered by a dark crack on mid-grey concrete (about 120 levels darker)
# sits at it, so a crack blurred by resizing keeps its width.
DARKER_BY = 60.0
SLOPE = 0.15
THRESHOLD = 0.5


def convert(tile_size: int) -> bytes:
    """The model as a LiteRT flatbuffer with the contract's input and output."""
    import keras

    from training.converter import saved_model_converter

    inputs = keras.Input((tile_size, tile_size, 3))
    grey = keras.layers.Conv2D(1, 1, use_bias=False, name="grey")(inputs)
    # Two one-dimensional boxes make the square box, at 2 * WINDOW instead of WINDOW ** 2
    # additions per pixel; "same" pooling averages only the pixels inside the tile.
    mean = keras.layers.AveragePooling2D((1, WINDOW), strides=1, padding="same")(grey)
    mean = keras.layers.AveragePooling2D((WINDOW, 1), strides=1, padding="same")(mean)
    darker = keras.layers.Subtract()([mean, grey])
    probability = keras.layers.Conv2D(1, 1, activation="sigmoid", name="logistic")(darker)
    model = keras.Model(inputs, probability)
    model.get_layer("grey").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32)])
    model.get_layer("logistic").set_weights([np.full((1, 1, 1, 1), SLOPE, np.float32),
                                             np.array([-SLOPE * DARKER_BY], np.float32)])
    with saved_model_converter(model, tile_size) as converter:
        return converter.convert()


def with_line_mask_model(model_dir: Path, folder: Path) -> Path:
    """A copy of the classifier folder ``model_dir`` in ``folder``, with this mask model
    and its card section (the sha256 of the file written)."""
    shutil.copytree(model_dir, folder)
    card_path = folder / "model_card.json"
    card = json.loads(card_path.read_text())
    content = convert(int(card["tile_size"]))
    (folder / MASK_FILE).write_bytes(content)
    card["mask_model"] = {"file": MASK_FILE, "sha256": hashlib.sha256(content).hexdigest(),
                          "tile_size": int(card["tile_size"]), "threshold": THRESHOLD,
                          "tolerance_px": 2, "training_sources": [],
                          "note": "hand-set dark-line detector (bench/line_mask_model.py)"}
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return folder
