"""Float vs int8 LiteRT: raw forward images/s at batch 1, 8 and 32, and both files'
accuracy on every source's test windows, in one run.

    python -m bench.int8 --model MODEL_DIR --data DATA_DIR [--int8 FILE]

The int8 file is the card's (listed only when it passed its gate) or ``--int8``, e.g. one
the gate refused, to see what it would have cost and gained. Speeds are measured
interleaved, ``--repeats`` times, median reported, so a neighbour's burst slows both files
and not one; the accuracy figures are the gate's own (``training.int8_gate``) on the test
windows of the data set the model was trained on.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from bench.measure import images_per_second, interleaved_medians, machine, markdown_table
from crackscan.model_card import join, read_card
from crackscan.tflite_model import TFLiteClassifier
from training.calibration import calibration_images
from training.int8_gate import gate, split_scores

BATCHES = (1, 8, 32)
FILES = ("float", "int8")


def speed_table(rates: dict[int, dict[str, float]]) -> str:
    rows = [[name] + [f"{rates[batch][name]:.1f}" for batch in BATCHES] for name in FILES]
    rows.append(["int8 / float"] + [f"{rates[b]['int8'] / rates[b]['float']:.2f}x"
                                    for b in BATCHES])
    return markdown_table(["file"] + [f"forward b={b}" for b in BATCHES], rows)


def accuracy_table(report: dict) -> str:
    rows = [[name, figures["examples"], f"{figures['float_accuracy']:.2%}",
             f"{figures['int8_accuracy']:.2%}", figures["flips"],
             "pass" if figures["passed"] else "FAIL"]
            for name, figures in report["by_source"].items()]
    overall = report["all"]
    rows.append(["all", overall["examples"], f"{overall['float_accuracy']:.2%}",
                 f"{overall['int8_accuracy']:.2%}", overall["flips"],
                 "pass" if report["passed"] else "FAIL"])
    return markdown_table(["test windows", "examples", "float accuracy", "int8 accuracy",
                           "flipped verdicts", "gate"], rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder with a float .tflite")
    parser.add_argument("--data", required=True,
                        help="the data set the model was trained on (test windows)")
    parser.add_argument("--int8", type=Path,
                        help="int8 .tflite to measure (default: the one the card lists)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="LiteRT XNNPACK threads (default: the CPU count)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="measuring time per file, batch size and repeat (default 3)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats of every measurement (default 3)")
    args = parser.parse_args(argv)

    card = read_card(args.model)
    if args.int8 is None and "int8_file" not in card:
        parser.error(f"{args.model} lists no int8 file that passed its gate; pass --int8 FILE "
                     f"to measure another")
    int8_path = str(args.int8) if args.int8 else join(args.model, card["int8_file"])
    contents = {}
    for name, path in (("float", join(args.model, card["tflite_file"])), ("int8", int8_path)):
        with open(path, "rb") as handle:
            contents[name] = handle.read()
    tile_size = int(card["tile_size"])
    images, _ = calibration_images(args.data, tile_size, per_stream=8)
    # Repeated where the set is small, so that the largest batch is measured at all.
    images = np.resize(images, (max(len(images), 2 * max(BATCHES)), *images.shape[1:]))
    forwards = {name: TFLiteClassifier(content, args.threads).predict
                for name, content in contents.items()}
    rates = {batch: interleaved_medians(
        lambda name: images_per_second(forwards[name], images.astype(np.float32), batch,
                                       args.seconds), FILES, args.repeats)
        for batch in BATCHES}
    positive = card["class_names"].index(card["positive_class"])
    report = gate(split_scores(contents, args.data, "test", tile_size, positive),
                  "float", "int8", float(card["threshold"]))
    result = f"{speed_table(rates)}\n\n{accuracy_table(report)}"
    print(f"images/s (median of {args.repeats} interleaved runs of {args.seconds:g} s), "
          f"{tile_size} px tiles from the train split, LiteRT threads {args.threads}; "
          f"int8: {int8_path} ({len(contents['int8']):,} bytes, float "
          f"{len(contents['float']):,}); accuracy at threshold {card['threshold']:.4f}\n"
          f"{machine()}\n")
    print(result)
    return result


if __name__ == "__main__":
    main()
