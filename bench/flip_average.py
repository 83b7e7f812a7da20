"""What ``--flip-average`` costs: LiteRT images/s of one pass against the mirror average and
the four-flip average of the same weights, at the pipeline's batch size, side by side.

    python -m bench.flip_average --model MODEL_DIR [--images ../shared/data/concrete]

MODEL_DIR needs ``model.keras``, trained with or without ``--flip-average``: the benchmark
converts every form of its weights to LiteRT itself, so the files differ by the average
alone. All are measured interleaved, ``--repeats`` times (median).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

from bench.measure import (add_litert_rate_flags, images_per_second, interleaved_medians,
                           machine, markdown_table)
from crackscan.model_card import join, read_card
from crackscan.tflite_model import TFLiteClassifier
from pipeline.inference import DEFAULT_BATCH_SIZES, LITERT
from training.export_tflite import convert, sample_images
from training.model import FLIP_AVERAGE_LAYER, FLIP_VIEWS, with_flip_average

ONE_PASS = "one pass"


def all_forms(model: keras.Model) -> dict[str, keras.Model]:
    """The one-pass model and each flip average of it, from any of them."""
    try:
        model.get_layer(FLIP_AVERAGE_LAYER)
    except ValueError:
        one_pass = model
    else:
        one_pass = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    return {ONE_PASS: one_pass} | {f"{views} average": with_flip_average(one_pass, views)
                                   for views in FLIP_VIEWS}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="trained model folder (with model.keras)")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/concrete"))
    add_litert_rate_flags(parser, "form")
    args = parser.parse_args(argv)

    card = read_card(args.model)
    tile = int(card["tile_size"])
    model = keras.saving.load_model(join(args.model, card["model_file"]), compile=False)
    forms = all_forms(model)
    images = sample_images(args.images, tile, 64).astype(np.float32)
    forwards = {name: TFLiteClassifier(convert(form, tile), args.threads).predict
                for name, form in forms.items()}
    batch = DEFAULT_BATCH_SIZES[LITERT]
    rates = interleaved_medians(
        lambda name: images_per_second(forwards[name], images, batch, args.seconds),
        list(forwards), args.repeats)
    result = markdown_table(
        ["model", f"LiteRT images/s (b={batch})", "against one pass"],
        [[name, f"{rate:.1f}", f"{rate / rates[ONE_PASS]:.2f}"] for name, rate in rates.items()])
    print(f"images/s (median of {args.repeats} interleaved runs), {tile} px tiles, model at "
          f"{card['input_size']} px, LiteRT threads {args.threads}\n{machine()}\n")
    print(result)
    return result


if __name__ == "__main__":
    main()
