"""Training end to end on generated data: no data set, no cloud, no GPU, a few minutes.

``python -m training.demo [--output train-demo-output]``

It sits on top of both halves of the product (it trains, then scores with the pipeline), so
nothing below imports it.

1. generates a labelled archive of concrete-like patches (``Negative/``, ``Positive/``),
2. builds the sharded TFRecord data set from it,
3. trains the two-stage MobileNetV2 (from scratch by default: nothing is downloaded) and
   prints its evaluation,
4. generates a drone-survey zip of larger photos (some cracked, one broken file) and scores
   it with the Beam pipeline on the DirectRunner, printing where the results are.

With ``--weights imagenet`` (internet needed once) stage 2 fine-tunes a pretrained backbone;
with the real data set, use the commands in the README instead.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import shutil
import time

from crackscan import cli, synthetic, verbosity
from pipeline import score
from training import build_dataset, train


def step(number: int, text: str) -> None:
    print(f"\n=== [{number}/4] {text}", flush=True)


def print_against_truth(scores: str, members: list[dict]) -> None:
    """The generator knows where it drew cracks: show each verdict beside the truth."""
    rows = {}
    for path in glob.glob(os.path.join(scores, "predictions-*.csv")):
        with open(path, newline="") as handle:
            rows |= {row["uri"].split("!", 1)[1]: row for row in csv.DictReader(handle)}
    print(f"\n{'photo':<24}{'drawn cracks':>13}  {'verdict':<9}{'p(crack)':>9}  positive tiles")
    for member in members:
        row = rows.get(member["name"])
        truth = "broken" if member["crack"] is None else len(member["boxes"])
        verdict = (f"{row['label']:<9}{float(row['crack_probability']):>9.3f}  "
                   f"{row['positive_tiles']}/{row['tiles']}") if row else "in errors"
        print(f"{member['name']:<24}{truth:>13}  {verdict}")


def parser() -> argparse.ArgumentParser:
    parser = cli.command_parser("training.demo", __doc__.split("\n\n")[0])
    parser.add_argument("--output", default="train-demo-output",
                        help="folder for everything; replaced on every run (default: "
                             "train-demo-output)")
    parser.add_argument("--weights", default="none",
                        help="backbone: 'none' (offline), 'imagenet' or a .weights.h5 path")
    parser.add_argument("--per-class", type=int, default=300, help="patches per class")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--photos", type=int, default=6, help="survey photos to score")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse_args(parser(), argv)
    verbosity.configure(argv)
    started = time.monotonic()
    if os.path.exists(args.output):
        shutil.rmtree(args.output)
    paths = {name: os.path.join(args.output, name)
             for name in ("sample", "dataset", "model", "survey.zip", "scores")}

    step(1, f"generating {2 * args.per_class} synthetic concrete patches -> {paths['sample']}")
    print(synthetic.write_patch_folder(paths["sample"], args.per_class, seed=args.seed))

    step(2, f"building TFRecords -> {paths['dataset']}")
    build_dataset.main(["--source", paths["sample"], "--output", paths["dataset"],
                        "--shards", "2"])

    step(3, f"training ({args.weights} backbone, {args.image_size} px) -> {paths['model']}")
    report = train.main(["--data", paths["dataset"], "--output", paths["model"],
                         "--weights", args.weights, "--image-size", str(args.image_size),
                         "--epochs", str(args.epochs), "--fine-tune-epochs", "3",
                         "--patience", "4", "--seed", str(args.seed)])

    step(4, f"scoring a generated drone survey ({args.photos} photos + 1 broken file)")
    members = synthetic.write_survey_archive(paths["survey.zip"], photos=args.photos,
                                             seed=args.seed + 1)
    summary = score.run(["--input", paths["survey.zip"], "--model", paths["model"],
                         "--output", paths["scores"], "--write-tiles"])
    print_against_truth(paths["scores"], members)
    print(f"\nDone in {time.monotonic() - started:.0f}s. Test accuracy on synthetic patches "
          f"{report['test']['accuracy']:.3f}; survey: {summary['scored']} scored, "
          f"{summary['failed']} failed, {summary['positive']} with cracks.")
    print(f"  predictions: {paths['scores']}/predictions-*.csv")
    print(f"  errors:      {paths['scores']}/errors-*.jsonl")
    print(f"  report:      {os.path.abspath(paths['scores'])}/report.html")
    print(f"  model:       {paths['model']}/model.keras (card, metrics.json, plots/)")
    return {"training": report, "scoring": summary}



console = cli.console_script(main)


if __name__ == "__main__":
    main()
