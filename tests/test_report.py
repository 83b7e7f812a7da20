"""The morning report: heat-map thumbnails of real survey photos and the HTML page around them."""
from __future__ import annotations

import base64
import io
import re
import tracemalloc
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.report import MAX_ERRORS_SHOWN, OUTLINE_COLOR, heatmap_thumbnail, render_report

from conftest import SHARED
SURVEY_PHOTO = SHARED / "data" / "survey" / "crack" / "CRACK500_20160328_153612_1281_1081.jpg"


@pytest.fixture(scope="module")
def survey_rgb() -> np.ndarray:
    """A real 4800x6000 survey photo, the size that must not be processed at full size."""
    if not SURVEY_PHOTO.exists():
        pytest.skip(f"shared data absent: {SURVEY_PHOTO} (the ../shared folder is not "
                    "checked out next to the repository)")
    with Image.open(SURVEY_PHOTO) as image:
        return np.asarray(image.convert("RGB"))


def tile_grid(width: int, height: int, size: int, stride: int) -> list[dict]:
    return [{"box": [x, y, x + size, y + size], "crack_probability": 0.0}
            for y in range(0, height - size + 1, stride)
            for x in range(0, width - size + 1, stride)]


def decode(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def plain_thumbnail(rgb: np.ndarray, max_side: int) -> np.ndarray:
    image = Image.fromarray(rgb)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.int16)


def synthetic_photo(width: int, height: int) -> np.ndarray:
    """Grey concrete-like noise: mid-range values, so any tint shows as a difference."""
    rng = np.random.default_rng(7)
    return rng.integers(90, 170, size=(height, width, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- heatmap_thumbnail


@pytest.mark.shared("a 4800x6000 survey photo (../shared/data/survey/crack/CRACK500_*.jpg, not "
                    "checked in: 3 MB)")
def test_survey_photo_is_tinted_and_outlined_only_where_a_tile_is_cracked(survey_rgb):
    height, width = survey_rgb.shape[:2]
    tiles = tile_grid(width, height, size=1200, stride=600)
    hot = next(t for t in tiles if t["box"] == [1200, 2400, 2400, 3600])
    hot["crack_probability"] = 0.95

    thumb = decode(heatmap_thumbnail(survey_rgb, tiles, threshold=0.5, max_side=320))
    reference = plain_thumbnail(survey_rgb, 320)

    assert thumb.shape == (320, 256, 3)  # longest side is max_side, aspect ratio kept
    assert thumb.shape == reference.shape
    difference = np.abs(thumb - reference).mean(axis=2)
    # The hot tile covers x 64..128, y 128..192 of the thumbnail; stay clear of its outline.
    assert difference[136:184, 72:120].mean() > 25
    assert difference[220:310, 160:250].mean() < 3
    assert difference[10:100, 160:250].mean() < 3
    assert tuple(thumb[160, 64]) == OUTLINE_COLOR  # the outline sits on the tile's edge
    assert tuple(thumb[160, 140]) != OUTLINE_COLOR


@pytest.mark.shared("a 4800x6000 survey photo (../shared/data/survey/crack/CRACK500_*.jpg, not "
                    "checked in: 3 MB)")
def test_survey_photo_is_downscaled_before_anything_full_size_is_built(survey_rgb):
    height, width = survey_rgb.shape[:2]
    tiles = tile_grid(width, height, size=600, stride=300)
    tracemalloc.start()
    try:
        heatmap_thumbnail(survey_rgb, tiles, threshold=0.5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The photo alone is 86 MB; a full-size float overlay would be four times that.
    assert peak < 20 * 1024 * 1024


def test_one_tile_covering_a_small_image_tints_and_outlines_all_of_it():
    rgb = synthetic_photo(448, 448)
    tile = {"box": [0, 0, 448, 448], "crack_probability": 0.9}

    thumb = decode(heatmap_thumbnail(rgb, [tile], threshold=0.5))

    assert thumb.shape == (320, 320, 3)
    assert np.abs(thumb - plain_thumbnail(rgb, 320))[20:300, 20:300].mean() > 25
    for y, x in [(0, 0), (0, 319), (319, 0), (319, 319), (160, 0), (0, 160)]:
        assert tuple(thumb[y, x]) == OUTLINE_COLOR


def test_zero_probability_leaves_the_photo_as_it_was():
    rgb = synthetic_photo(448, 448)
    tile = {"box": [0, 0, 448, 448], "crack_probability": 0.0}

    thumb = decode(heatmap_thumbnail(rgb, [tile], threshold=0.5))

    assert np.abs(thumb - plain_thumbnail(rgb, 320)).max() <= 2
    assert not (thumb == OUTLINE_COLOR).all(axis=2).any()


def test_images_smaller_than_max_side_are_not_upscaled():
    thumb = decode(heatmap_thumbnail(synthetic_photo(50, 30),
                                     [{"box": [0, 0, 50, 30], "crack_probability": 0.7}],
                                     threshold=0.5))
    assert thumb.shape == (30, 50, 3)


# --------------------------------------------------------------------------- render_report

HOSTILE_URI = 'flight.zip!<script>alert("uri")</script>.jpg'
HOSTILE_ERROR = '<img src=x onerror=alert(1)> "quoted" & more'


class _Page(HTMLParser):
    """Tags and visible text of a page, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if not self._in_style:
            self.text.append(data)


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def summary(**overrides) -> dict:
    values = dict(seen=12480, scored=12468, failed=12, positive=431, crack_rate=431 / 12468,
                  model_version="mnv2-2024-05-30", wall_seconds=3723.4, images_per_second=3.35,
                  reused=40, inputs=["gs://surveys/2024-06-01/*.zip"],
                  output="gs://crackscan/dt=2024-06-01/")
    values.update(overrides)
    return values


def top_image(uri: str, probability: float, thumbnail: bytes | None = None) -> dict:
    return {"uri": uri, "label": "crack", "crack_probability": probability, "threshold": 0.5,
            "width": 4800, "height": 6000, "tiles": 285, "positive_tiles": 41,
            "thumbnail_png": thumbnail}


def test_strings_from_the_data_cannot_inject_markup():
    page = render_report(
        summary(model_version="<marquee>v1", inputs=["gs://b/<i>/*.zip"], output="<u>out</u>"),
        [top_image(HOSTILE_URI, 0.9), top_image('" onmouseover="alert(2)', 0.8)],
        [{"uri": HOSTILE_URI, "stage": "<decode>", "error": HOSTILE_ERROR}])

    parsed = parse(page)
    assert not {"script", "marquee", "i", "u"} & set(parsed.tags)
    assert "x" not in [value for _, value in parsed.attributes]  # no injected <img src=x>
    assert not any(name.startswith("on") for name, _ in parsed.attributes)
    text = "".join(parsed.text)
    for literal in (HOSTILE_URI, HOSTILE_ERROR, "<marquee>v1", "<decode>", "gs://b/<i>/*.zip"):
        assert literal in text  # shown to the reader as text, exactly as it was


def test_thumbnails_are_inlined_and_nothing_is_fetched_from_elsewhere():
    png = heatmap_thumbnail(synthetic_photo(64, 48),
                            [{"box": [0, 0, 64, 48], "crack_probability": 0.9}], 0.5)
    page = render_report(summary(), [top_image("a.jpg", 0.9, png),
                                     top_image("unreadable.jpg", 0.8, None)], [])

    sources = [value for name, value in parse(page).attributes if name in ("src", "href")]
    assert sources == [f"data:image/png;base64,{base64.b64encode(png).decode()}"]
    assert not re.search(r"<link|<script|@import|url\(", page, re.IGNORECASE)
    assert "could not be re-read" in page


def test_header_shows_the_counts_and_a_matching_accounting():
    text = " ".join(parse(render_report(summary(), [], [])).text)

    for shown in ("12,480", "12,468", "431", "3.5%", "3.4", "mnv2-2024-05-30", "1h 02m",
                  "All 12,480 images accounted for"):
        assert shown in text
    assert "mismatch" not in text


def test_accounting_mismatch_is_called_out():
    counts = dict(seen=np.int64(1000), scored=np.int64(990), failed=np.int64(5))
    text = " ".join(parse(render_report(summary(**counts), [], [])).text)

    assert "Accounting mismatch" in text
    assert "1,000 seen" in text and "5 unaccounted" in text
    assert "accounted for" not in text


def test_only_the_summary_keys_present_are_rendered():
    page = render_report({"seen": 3, "scored": 3, "failed": 0}, [], [])

    text = " ".join(parse(page).text)
    assert "All 3 images accounted for" in text
    assert "Reused" not in text and "Crack rate" not in text
    assert "Accounting not available" in render_report({"scored": 3}, [], [])


def test_metadata_warnings_are_a_headline_only_when_some_were_left_out():
    quiet = render_report({"seen": 3, "scored": 3, "failed": 0, "metadata_warnings": 0}, [], [])
    assert "Metadata warnings" not in " ".join(parse(quiet).text)
    warned = render_report({"seen": 3, "scored": 3, "failed": 0, "metadata_warnings": 2}, [],
                           [])
    assert re.search(r'<div class="stat warn"><div class="value">2</div>'
                     r'<div class="label">Metadata warnings</div>', warned)


def test_most_cracked_images_come_first_with_their_tile_counts():
    page = render_report(summary(), [top_image("low.jpg", 0.61), top_image("high.jpg", 0.97)],
                         [])

    assert page.index("high.jpg") < page.index("low.jpg")
    assert "0.970" in page and "41 / 285" in page


def test_long_error_lists_are_cut_and_the_rest_is_counted():
    errors = [{"uri": f"gs://s/bad-{i:05d}.jpg", "stage": "decode", "error": "empty file"}
              for i in range(MAX_ERRORS_SHOWN + 734)]

    page = render_report(summary(failed=len(errors)), [], errors)

    assert page.count('<td class="stage">') == MAX_ERRORS_SHOWN
    assert "bad-00000.jpg" in page and f"bad-{MAX_ERRORS_SHOWN - 1:05d}.jpg" in page
    assert f"bad-{MAX_ERRORS_SHOWN:05d}.jpg" not in page
    assert "734 more" in page
    assert "1,234" in page  # the full count, per stage and in the heading
