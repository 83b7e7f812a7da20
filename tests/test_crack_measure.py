"""Crack length and width from a mask, on cracks of known size drawn into real photos.

Each crack is drawn with Pillow, at a known width and along a known path, into a real 227x227
photo of intact concrete from ``tests/fixtures``; its mask is every pixel the drawing changed.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from crackscan.crack_measure import CrackMeasurement, measure
from scoring_helpers import concrete

WIDTHS = (2, 4, 8, 16)
# Dark grey: what a crack's shadow looks like on concrete; no fixture pixel has it exactly.
CRACK_COLOUR = (38, 36, 35)
# The arc's bounding box: radius 93.5 px around the photo's centre.
ARC_BOX, ARC_START, ARC_END = (20, 20, 207, 207), 200, 340


def straight(draw: ImageDraw.ImageDraw, width: int, start: tuple[int, int],
             end: tuple[int, int]) -> float:
    draw.line([start, end], fill=CRACK_COLOUR, width=width)
    return math.dist(start, end)


def curved(draw: ImageDraw.ImageDraw, width: int) -> float:
    """An arc drawn inward from its box: its centre line is half the width inside."""
    draw.arc(ARC_BOX, ARC_START, ARC_END, fill=CRACK_COLOUR, width=width)
    radius = (ARC_BOX[2] - ARC_BOX[0]) / 2 - width / 2
    return radius * math.radians(ARC_END - ARC_START)


SHAPES = {
    "along-a-row": lambda draw, width: straight(draw, width, (20, 110), (205, 110)),
    "diagonal": lambda draw, width: straight(draw, width, (20, 20), (200, 200)),
    # 26.6 degrees: between a row and a diagonal, where a pixel staircase reads longest.
    "slanted": lambda draw, width: straight(draw, width, (20, 60), (200, 150)),
    "curved": curved,
}


def cracked(photo: Path, shape: str, width: int) -> tuple[np.ndarray, float]:
    """The mask of a crack drawn into the photo, and the crack's true length."""
    with Image.open(photo) as image:
        intact = image.convert("RGB")
    drawn = intact.copy()
    length = SHAPES[shape](ImageDraw.Draw(drawn), width)
    mask = np.any(np.asarray(drawn) != np.asarray(intact), axis=2)
    return mask, length


@pytest.fixture(scope="module")
def photos(real_data: Path) -> list[Path]:
    return concrete(real_data, "Negative", len(SHAPES))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("shape", SHAPES)
def test_drawn_crack_reads_its_width_and_length(photos: list[Path], shape: str, width: int):
    mask, length = cracked(photos[list(SHAPES).index(shape)], shape, width)
    measured = measure(mask)
    if width == 2:
        assert abs(measured.width_max_px - width) <= 1, measured
    else:
        assert measured.width_max_px == pytest.approx(width, rel=0.25), measured
    assert measured.width_median_px <= measured.width_max_px
    assert measured.width_median_px == pytest.approx(width, rel=0.25, abs=1), measured
    assert measured.length_px == pytest.approx(length, rel=0.10), (measured, length)


def test_no_crack_has_no_length_and_no_width(photos: list[Path]):
    with Image.open(photos[0]) as image:
        empty = np.zeros(image.size[::-1], dtype=bool)
    assert measure(empty) == CrackMeasurement(0.0, None, None)
    assert CrackMeasurement(0.0, None, None).columns(0.3)["crack_width_max_mm"] is None


def test_millimetres_need_the_ground_sampling_distance(photos: list[Path]):
    mask, _ = cracked(photos[0], "along-a-row", 4)
    measured = measure(mask)
    in_mm = measured.columns(0.25)
    assert in_mm["crack_length_mm"] == pytest.approx(measured.length_px * 0.25)
    assert in_mm["crack_width_max_mm"] == pytest.approx(measured.width_max_px * 0.25)
    assert in_mm["crack_width_median_mm"] == pytest.approx(measured.width_median_px * 0.25)
    without = measured.columns()
    assert without["crack_width_max_px"] == measured.width_max_px
    assert [without[name] for name in ("crack_length_mm", "crack_width_max_mm",
                                       "crack_width_median_mm")] == [None, None, None]
