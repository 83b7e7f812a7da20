"""How wide and how long the cracks of each field source's masks are, in pixels.

``python -m training.mask_stats --source ../shared/data/field/uavcrack --source ... \\
    --histogram crack_widths.png``

A crack-width model trained on masks can only read the widths its masks hold: a source whose
cracks are all 2-4 px wide teaches nothing about 15 px cracks, and a hairline at one GSD is a
wide crack at another. Every mask (``<source>/masks/*.png``: 0 background, 255 crack, 128
joint) is measured by :mod:`crackscan.crack_measure`, joints left out as the look-alikes
they are. Prints one row per source (the spread over its masks of the widest point, the
median width and the skeleton length) and writes the histograms as a PNG. A mask that cannot
be read is named with the reason and counted, never skipped silently.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402

from crackscan import cli  # noqa: E402
from crackscan.crack_measure import CrackMeasurement, measure  # noqa: E402
from crackscan.decode import DEFAULT_MAX_PIXELS, DecodeError, open_image  # noqa: E402
from training.windows import CRACK_MIN, decode_mask  # noqa: E402

MASK_SUFFIX = ".png"
DEFAULT_HISTOGRAM = "crack_widths.png"
PERCENTILES = (10, 50, 90)
# Width histogram bins: widths are twice a distance between pixel centres less half a pixel
# (1.5, 2.33, 3.5, 3.97, ...), so 1 px bins alternate full and empty; 2 px bins do not.
WIDTH_BIN_PX = 2.0
WIDTH_SHOWN = 99  # percentile of all widths where the width axis ends
LENGTH_BINS = 30


class SourceStats(NamedTuple):
    """The measurements of one source's masks that hold a crack, and what the others were."""

    name: str
    masks: int
    measured: tuple[CrackMeasurement, ...]
    no_crack: int
    unreadable: tuple[str, ...]

    def spread(self, field: str) -> tuple[float, ...]:
        """The 10th, 50th and 90th percentile of one measurement over the masks."""
        values = [getattr(m, field) for m in self.measured]
        return tuple(float(v) for v in np.percentile(values, PERCENTILES)) if values else ()


def read_crack_mask(path: str) -> np.ndarray:
    """The crack pixels of one mask (joints left out), or :class:`DecodeError` saying why."""
    with open(path, "rb") as handle:
        data = handle.read()
    mask = decode_mask(data, open_image(data, DEFAULT_MAX_PIXELS).size, DEFAULT_MAX_PIXELS)
    return mask >= CRACK_MIN


def source_stats(source: str) -> SourceStats:
    folder = os.path.join(source, "masks")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{source}: no masks/ folder (a field source holds "
                                f"images/ and masks/)")
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(MASK_SUFFIX))
    measured, no_crack, unreadable = [], 0, []
    for name in names:
        path = os.path.join(folder, name)
        try:
            cracks = read_crack_mask(path)
        except (DecodeError, OSError) as exc:
            logging.warning("%s: unreadable mask: %s", path, exc)
            unreadable.append(f"{path}: {exc}")
            continue
        if cracks.any():
            measured.append(measure(cracks))
        else:
            no_crack += 1
    return SourceStats(os.path.basename(os.path.normpath(source)), len(names),
                       tuple(measured), no_crack, tuple(unreadable))


def _spread_text(values: tuple[float, ...], decimals: int) -> str:
    return " / ".join(f"{value:.{decimals}f}" for value in values) if values else "-"


def table(stats: list[SourceStats]) -> str:
    """A Markdown table: one row per source, each spread as p10 / median / p90."""
    rows = ["| source | masks | with a crack | no crack | unreadable | widest point px "
            "(p10 / p50 / p90) | median width px (p10 / p50 / p90) | length px "
            "(p10 / p50 / p90) |",
            "|---|---:|---:|---:|---:|---|---|---|"]
    for source in stats:
        rows.append(f"| {source.name} | {source.masks} | {len(source.measured)} | "
                    f"{source.no_crack} | {len(source.unreadable)} | "
                    f"{_spread_text(source.spread('width_max_px'), 1)} | "
                    f"{_spread_text(source.spread('width_median_px'), 1)} | "
                    f"{_spread_text(source.spread('length_px'), 0)} |")
    return "\n".join(rows)


def histogram(stats: list[SourceStats], path: str) -> str:
    """Widest point and skeleton length per mask, one outline per source, each bar the share
    of the source's masks (sources differ in size by 25 times)."""
    fig, (widths, lengths) = plt.subplots(1, 2, figsize=(12, 4.2))
    every = [m for source in stats for m in source.measured]
    # The widest 1% run out to 80 px and would squeeze the rest into a few bars.
    widest = float(np.percentile([m.width_max_px for m in every], WIDTH_SHOWN)) if every else 1.0
    width_bins = np.arange(0.0, widest + WIDTH_BIN_PX, WIDTH_BIN_PX)
    longest = max((m.length_px for m in every), default=1.0)
    length_bins = np.geomspace(1.0, max(longest, 2.0) * 1.05, LENGTH_BINS)
    for source in stats:
        if not source.measured:
            continue
        label = f"{source.name} ({len(source.measured)})"
        share = np.full(len(source.measured), 1 / len(source.measured))
        widths.hist([min(m.width_max_px, width_bins[-1]) for m in source.measured],
                    bins=width_bins, weights=share, histtype="step", linewidth=1.4,
                    label=label)
        lengths.hist([max(m.length_px, 1.0) for m in source.measured], bins=length_bins,
                     weights=share, histtype="step", linewidth=1.4, label=label)
    widths.set(xlabel="widest point of the mask's cracks (px; the last bar: wider)",
               ylabel="share of the source's masks", title="Crack width per mask")
    lengths.set(xscale="log", xlabel="skeleton length (px; under 1: at 1)",
                title="Crack length per mask")
    widths.legend(fontsize=8)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def parser() -> argparse.ArgumentParser:
    p = cli.command_parser("training.mask_stats", __doc__.split("\n\n")[0])
    p.add_argument("--source", action="append", required=True, metavar="DIR",
                   help="a field source folder holding masks/*.png; repeat for more")
    p.add_argument("--histogram", default=DEFAULT_HISTOGRAM, metavar="PNG",
                   help=f"where the histograms go (default: {DEFAULT_HISTOGRAM})")
    return p


def main(argv: list[str] | None = None) -> list[SourceStats]:
    args = cli.parse_args(parser(), argv)
    with cli.one_line_errors("training.mask_stats", OSError):
        stats = [source_stats(source) for source in args.source]
        print(table(stats))
        for source in stats:
            for problem in source.unreadable:
                print(f"unreadable: {problem}")
        print(f"histograms: {histogram(stats, args.histogram)}")
    return stats


if __name__ == "__main__":
    main(sys.argv[1:])
