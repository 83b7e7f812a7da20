"""What crack masks cost the scoring pipeline: verdicts only, with masks, and with mask PNGs,
side by side on a survey of real photos and on one where no tile is flagged.

    python -m bench.masks [--model pipeline/default_model] [--survey ../shared/data/survey]

The mask model runs only on the tiles the classifier flags and their neighbours, so on a
survey where no tile reaches the tile threshold it should cost nothing but its load, and on
a cracked one in proportion to the cracks. The unflagged survey is the survey's own photos
on which a first verdicts-only job flagged no tile. Each job is one whole ``pipeline.score``
run in this process (checks, graph, model loads, read, decode, infer, masks, write, report),
timed interleaved, ``--repeats`` times, median; the figure is each job's time over the
verdicts-only job's on the same survey. Where the model's card lists no ``mask_model`` (the
shipped model until its mask model is attached), the stand-in of
``bench/line_mask_model.py`` is added to a copy of the folder, and the table says so.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

from bench.line_mask_model import with_line_mask_model
from bench.measure import ONE_PROCESS, image_files, interleaved_medians, machine, markdown_table
from crackscan.mask_spec import read_mask_spec
from crackscan.model_card import read_card
from pipeline.inference import SHIPPED_MODEL_DIR
from pipeline.records import parse_predictions
from pipeline.score import run as score

JOBS = {"verdicts only": ["--no-masks"], "masks": [], "masks + PNGs": ["--write-masks"]}


def job(model_dir: str, survey: str, flags: list[str], keep: str | None = None) -> dict:
    """One whole scoring job over the survey, in this process; its summary. ``keep`` is an
    output folder to leave behind (else a temporary one)."""
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        summary = score(["--input", survey, "--model", model_dir, "--output",
                         keep or os.path.join(out, "run"), *flags, *ONE_PROCESS])
    assert summary is not None and summary["accounting_ok"], summary
    return summary


def copy_some(source: Path, folder: Path, limit: int | None) -> Path:
    """At most ``limit`` of the survey's images (spread over its sorted files) in ``folder``."""
    files = image_files(source)
    picked = files[::max(1, len(files) // limit)][:limit] if limit else files
    folder.mkdir()
    for index, path in enumerate(picked):
        shutil.copyfile(path, folder / f"{index:04d}_{path.name}")
    return folder


def unflagged(model_dir: str, survey: Path, folder: Path, work: Path) -> Path:
    """The survey's photos on which a verdicts-only job flags no tile, in ``folder``."""
    out = work / "first-verdicts"
    job(model_dir, str(survey), JOBS["verdicts only"], keep=str(out))
    folder.mkdir()
    for shard in out.glob("predictions-*"):
        for row in parse_predictions(str(shard), shard.read_text()):
            if row["positive_tiles"] == 0:
                name = Path(row["uri"]).name
                shutil.copyfile(survey / name, folder / name)
    return folder


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SHIPPED_MODEL_DIR,
                        help="exported model folder (default: the shipped model)")
    parser.add_argument("--survey", default="../shared/data/survey",
                        help="folder of real survey photos (default: the shared survey)")
    parser.add_argument("--limit", type=int,
                        help="at most this many of the survey's photos (default: all)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats of each job (default 3)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        model, stand_in = args.model, ""
        if read_mask_spec(model, int(read_card(model)["tile_size"])) is None:
            model = str(with_line_mask_model(Path(model), work / "model"))
            stand_in = ("; its card lists no mask_model: the stand-in of "
                        "bench/line_mask_model.py was added to a copy")
        survey = copy_some(Path(args.survey), work / "survey", args.limit)
        surveys = {"survey": survey, "no tile flagged": unflagged(
            model, survey, work / "no-tile-flagged", work)}
        runs = [(name, label) for name in surveys for label in JOBS]
        first: dict[tuple[str, str], dict] = {}

        def seconds_of(run: tuple[str, str]) -> float:
            summary = job(model, str(surveys[run[0]]), JOBS[run[1]])
            first.setdefault(run, summary)  # the counts are the same in every repeat
            return summary["wall_seconds"]

        seconds = interleaved_medians(seconds_of, runs, args.repeats)
    rows = []
    for name, label in runs:
        summary = first[(name, label)]
        images = summary["scored"] + summary["failed"]
        took = seconds[(name, label)]
        rows.append([name, label, images, summary["tiles"],
                     summary["masks"]["images_measured"], summary["masks"]["tiles_run"],
                     f"{took:.2f}", f"{images / took:.2f}",
                     f"{took / seconds[(name, 'verdicts only')]:.2f}"])
    table = markdown_table(["survey", "job", "images", "tiles", "images measured",
                            "mask tiles", "job seconds (median)", "images/s",
                            "time against verdicts only"], rows)
    report = (f"{machine()}\nmodel {args.model}{stand_in}; median of {args.repeats} "
              f"interleaved jobs each, in one process\n\n{table}")
    print(report)
    return report


if __name__ == "__main__":
    main()
