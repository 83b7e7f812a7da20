"""What the shipped model costs in the scoring pipeline against a plain one-pass MobileNetV2
export of the same tile size, side by side on a survey of real photos.

    python -m bench.shipped_cost [--model pipeline/default_model] [--survey ../shared/data/survey]

The plain model is MobileNetV2 with a two-class head, untrained (its speed does not depend
on its weights), exported through training's own LiteRT path into a temporary folder: the
pipeline runs both exactly alike. Both whole jobs are timed interleaved, ``--repeats``
times, median; the figure is the shipped model's images/s as a share of the plain model's.
A model that averages views (``flip_average``) pays once per view, and shows it here; a
cascade pays the views only for the tiles whose one-pass probability lies in its band.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from pathlib import Path

from bench.measure import ONE_PROCESS, interleaved_medians, machine, markdown_table
from crackscan.model_card import read_card, write_card
from pipeline.inference import SHIPPED_MODEL_DIR
from pipeline.score import run as score


def plain_one_pass(folder: str, tile_size: int, images_dir: str) -> str:
    """An exported, untrained one-pass MobileNetV2 of ``tile_size`` in ``folder``."""
    from training import export, export_tflite, model

    network, _ = model.build(tile_size, "none")
    card = {"name": "plain-mobilenet-v2", "class_names": ["Negative", "Positive"],
            "positive_class": "Positive", "input_size": tile_size, "tile_size": tile_size,
            "threshold": 0.5}
    write_card(folder, export.describe(card, export.save_model(network, folder)))
    export_tflite.add_to_model_dir(folder, Path(images_dir))
    return folder


def views(card: dict) -> str:
    """What the card's model averages per tile, for the table."""
    if card.get("cascade"):
        band = card["cascade"]
        return f"{band['views']}, cascade {band['low']:.3f}-{band['high']:.3f}"
    return card.get("flip_average") or "none"


def job(model_dir: str, survey: str) -> dict:
    """One whole scoring job over the survey, in this process; its summary."""
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        summary = score(["--input", survey, "--model", model_dir, "--output",
                         os.path.join(out, "run"), *ONE_PROCESS])
    assert summary is not None and summary["accounting_ok"], summary
    return summary


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SHIPPED_MODEL_DIR,
                        help="exported model folder (default: the shipped model)")
    parser.add_argument("--survey", default="../shared/data/survey",
                        help="folder of real survey photos (default: the shared survey)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats of each job (default 3)")
    args = parser.parse_args(argv)

    card = read_card(args.model)
    with tempfile.TemporaryDirectory() as plain_dir:
        plain = plain_one_pass(plain_dir, int(card["tile_size"]), args.survey)
        models = {"shipped": args.model, "plain one pass": plain}
        first = {name: job(path, args.survey) for name, path in models.items()}
        seconds = interleaved_medians(
            lambda name: job(models[name], args.survey)["wall_seconds"], list(models),
            args.repeats)
    images = first["shipped"]["scored"] + first["shipped"]["failed"]
    tiles = first["shipped"]["accounting"]["in_pipeline"]["tiles"]
    rows = [[name, views(card) if name == "shipped" else "none",
             f"{seconds[name]:.2f}", f"{images / seconds[name]:.2f}",
             f"{tiles / seconds[name]:.1f}",
             f"{seconds['plain one pass'] / seconds[name]:.2f}"] for name in models]
    table = markdown_table(["model", "views averaged", "job seconds (median)", "images/s",
                            "tiles/s", "rate against plain"], rows)
    report = (f"{machine()}\n{images} images ({first['shipped']['scored']} scored, "
              f"{first['shipped']['failed']} failed), {tiles} tiles, median of "
              f"{args.repeats} interleaved jobs each\n\n{table}")
    print(report)
    return report


if __name__ == "__main__":
    main()
