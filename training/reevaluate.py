"""Evaluate and export a trained model again in another inference form, without training.

How a model is run (one pass, a flip average, a cascade) changes its threshold, its photo
rule and every figure, but not its weights: a form tried after a run need not repeat the
run's hour of training. A folder of any form will do; its one-pass model is what is re-run. The new folder's card lists the commands that made the weights
(the trained folder's own) and then this one, so it still reproduces from its sources.

    python -m training.reevaluate --model-dir runs/field-v18 --output runs/field-v18c \\
        --flip-average flips --cascade
"""
from __future__ import annotations

import argparse
import json
import posixpath
import time

import keras
import tensorflow as tf

from crackscan import cli, model_card, verbosity
from training import input_pipeline, train
from training import model as model_lib


def reevaluate(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    """The trained folder's model, data and options, in ``args``' form, written to
    ``args.output`` by :func:`training.train.evaluate_and_export`."""
    started = time.monotonic()
    card = model_card.read_card(args.model_dir)
    with tf.io.gfile.GFile(posixpath.join(args.model_dir, "metrics.json")) as handle:
        trained = json.load(handle)
    options = argparse.Namespace(**{**trained["options"], "output": args.output,
                                    "flip_average": args.flip_average,
                                    "cascade": args.cascade, "int8": args.int8})
    manifest = input_pipeline.read_manifest(options.data)
    if manifest["source_fingerprint"] != card["data"]["fingerprint"]:
        raise ValueError(f"{options.data}: not the data set {args.model_dir} was trained on "
                         f"(fingerprint {manifest['source_fingerprint'][:12]}, the card's "
                         f"{card['data']['fingerprint'][:12]})")
    model = model_lib.one_pass(keras.saving.load_model(
        posixpath.join(args.model_dir, model_card.MODEL_FILE), compile=False))
    if args.flip_average and not args.cascade:
        model = model_lib.with_flip_average(model, args.flip_average)
    commands = [*card.get("reproduce", []), train.command_line("training.reevaluate", argv)]
    taught_by = (card.get("teachers") or {}).get("models", [])
    tf.io.gfile.makedirs(args.output)
    return train.evaluate_and_export(model, options, commands, manifest, trained["stages"],
                                     started, taught_by)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.reevaluate", description=__doc__
                                .split("\n\n")[0])
    p.add_argument("--verbose", action="store_true",
                   help="also show the log lines of TensorFlow and LiteRT")
    p.add_argument("--model-dir", required=True,
                   help="a model folder written by training.train or by this command "
                        "(model.keras, model_card.json, metrics.json), of any form; its data "
                        "set must still be there")
    p.add_argument("--output", required=True, help="model folder to write")
    p.add_argument("--flip-average", choices=sorted(model_lib.FLIP_VIEWS), default=None,
                   help="as training.train's --flip-average (default: one pass)")
    p.add_argument("--cascade", action="store_true", help="as training.train's --cascade")
    p.add_argument("--int8", action="store_true", help="as training.train's --int8")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = train.parse_form_args(parser(), argv)
    verbosity.configure(argv)
    with cli.one_line_errors("training.reevaluate", input_pipeline.DataError,
                             FileNotFoundError, ValueError):
        return train.summarise(reevaluate(args, argv), args.output)


if __name__ == "__main__":
    main()
