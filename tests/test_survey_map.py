"""Where the cracks are: the sample survey's GPS EXIF in the rows, the GeoJSON and KML a GIS
opens, and the report's map in a real headless browser."""
from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import geo, report_map, score, survey_geotags
from pipeline.demo import PHOTOS_DIR
from pipeline.report import render_report

KML = "{http://www.opengis.net/kml/2.2}"
DEGREES = 1e-6


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled, geotagged sample survey scored by the shipped model."""
    output = tmp_path_factory.mktemp("sample") / "out"
    score.run(["--input", PHOTOS_DIR, "--output", str(output)])
    return output


@pytest.fixture(scope="module")
def flight() -> dict[str, survey_geotags.Shot]:
    return {shot.photo: shot for shot in survey_geotags.flight()}


def predictions(output: Path) -> dict[str, dict]:
    rows = {}
    for path in output.glob("predictions-*.csv"):
        rows |= {Path(row["uri"]).name: row for row in csv.DictReader(io.StringIO(
            path.read_text(), newline=""))}
    return rows


def test_rows_carry_each_photos_position_and_time(sample_run, flight):
    rows = predictions(sample_run)
    assert rows.keys() == flight.keys()
    for name, shot in flight.items():
        row = rows[name]
        assert abs(float(row["latitude"]) - shot.latitude) < DEGREES, name
        assert abs(float(row["longitude"]) - shot.longitude) < DEGREES, name
        assert float(row["altitude_m"]) == pytest.approx(shot.altitude_m)
        assert row["captured_at"] == shot.captured_at.isoformat()


def test_geojson_puts_every_photo_where_its_exif_says(sample_run, flight):
    collection = json.loads((sample_run / geo.GEOJSON_FILE).read_text())
    rows = predictions(sample_run)
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == len(flight)
    for feature in collection["features"]:
        name = Path(feature["properties"]["uri"]).name
        shot, row = flight[name], rows[name]
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
        longitude, latitude, altitude = feature["geometry"]["coordinates"]  # RFC 7946 order
        assert abs(longitude - shot.longitude) < DEGREES and abs(latitude - shot.latitude) < DEGREES
        assert altitude == pytest.approx(shot.altitude_m)
        assert feature["properties"]["label"] == row["label"]
        assert feature["properties"]["crack_probability"] == float(row["crack_probability"])
        assert feature["properties"]["positive_tiles"] == int(row["positive_tiles"])
        assert feature["properties"]["captured_at"] == shot.captured_at.isoformat()
    times = [f["properties"]["captured_at"] for f in collection["features"]]
    assert times == sorted(times)  # flight order


def test_kml_has_the_same_points_coloured_by_verdict(sample_run, flight):
    document = ElementTree.parse(sample_run / geo.KML_FILE).getroot()
    rows = predictions(sample_run)
    placemarks = document.findall(f".//{KML}Placemark")
    assert len(placemarks) == len(flight)
    styles = {style.get("id"): style.find(f".//{KML}color").text
              for style in document.iter(f"{KML}Style")}
    assert styles["crack"] != styles["intact"]
    for placemark in placemarks:
        name = Path(placemark.find(f"{KML}name").text).name
        longitude, latitude, altitude = (float(v) for v in placemark.find(
            f".//{KML}coordinates").text.split(","))
        assert abs(longitude - flight[name].longitude) < DEGREES
        assert abs(latitude - flight[name].latitude) < DEGREES
        expected = "crack" if rows[name]["label"] == "Positive" else "intact"
        assert placemark.find(f"{KML}styleUrl").text == f"#{expected}"
        assert placemark.find(f".//{KML}when").text == flight[name].captured_at.isoformat()


def test_summary_lists_the_map_files_and_counts_the_geotagged(sample_run, flight):
    summary = json.loads((sample_run / "summary.json").read_text())
    assert summary["geotagged"] == len(flight)
    assert summary["outputs"]["geojson"] == str(sample_run / geo.GEOJSON_FILE)
    assert summary["outputs"]["kml"] == str(sample_run / geo.KML_FILE)


def point(uri: str, latitude: float, longitude: float, probability: float,
          label: str = "Negative", **more) -> dict:
    return {"uri": uri, "latitude": latitude, "longitude": longitude,
            "crack_probability": probability, "label": label, "tiles": 1,
            "positive_tiles": int(label == "Positive")} | more


def circles(page: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
            for tag in re.findall(r"<circle [^>]*>", page)]


def test_map_is_drawn_to_scale_with_a_true_scale_bar():
    # 300 m due east and 400 m due north of the first, on the equator and far south.
    for latitude in (0.0, -60.0):
        east = 300 / (111_320.0 * math.cos(math.radians(latitude)))
        north = 400 / 110_574.0
        page = report_map.survey_map([point("a", latitude, 10.0, 0.1),
                                      point("b", latitude, 10.0 + east, 0.2),
                                      point("c", latitude + north, 10.0, 0.3)], set(), "Positive")
        xy = {c["data-uri"]: (float(c["cx"]), float(c["cy"])) for c in circles(page)}
        bar = re.search(r'<line x1="([\d.]+)" y1="[\d.]+" x2="([\d.]+)"', page)
        label = re.search(r">(\d+) m</text>", page)
        pixels_per_metre = (float(bar.group(2)) - float(bar.group(1))) / float(label.group(1))
        assert xy["b"][0] - xy["a"][0] == pytest.approx(300 * pixels_per_metre, rel=0.01)
        assert xy["a"][1] - xy["c"][1] == pytest.approx(400 * pixels_per_metre, rel=0.01)
        assert xy["b"][1] == pytest.approx(xy["a"][1], abs=0.2)  # north is up


def test_report_map_links_points_to_their_cards_and_escapes_names():
    points = [point("gs://b/<script>.jpg", -1.0, -2.0, 0.9, "Positive",
                    captured_at="2026-11-30T21:14:05-03:00", altitude_m=12.0),
              point("gs://b/far.jpg", -1.0001, -2.0001, 0.1)]
    top = [dict(points[0], threshold=0.5, width=10, height=10, thumbnail_png=None)]
    page = render_report({"seen": 2, "scored": 2, "failed": 0, "positive_class": "Positive"},
                         top, [], points)
    assert "<script>" not in page
    drawn = circles(page)
    assert len(drawn) == 2
    card = report_map.card_id("gs://b/<script>.jpg")
    assert f'<a href="#{card}"><circle' in page and f'id="{card}"' in page
    assert "-1.000000, -2.000000 &middot; 12 m &middot; 2026-11-30T21:14:05-03:00" in page
    assert "far.jpg" in page and page.count('<a href="#card-') == 1  # no card, no link


def test_photos_without_positions_give_empty_map_files_and_say_so():
    assert json.loads(geo.geojson([])) == {"type": "FeatureCollection", "features": []}
    assert ElementTree.fromstring(geo.kml([], "Positive")).findall(f".//{KML}Placemark") == []
    assert list(geo.point_of({"uri": "x", "latitude": None, "longitude": None})) == []
    page = render_report({"seen": 1, "scored": 1, "failed": 0}, [], [], [])
    assert "no map" in page and "<svg" not in page


def chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium on the PATH (tests/install_browser.sh installs Debian's)")
    return browser


def browse(page: Path, tmp_path: Path) -> tuple[str, np.ndarray, list[str]]:
    """The page's DOM after load, a screenshot of it, and what it wrote to the console."""
    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--force-color-profile=srgb", "--window-size=1280,2400",
             "--enable-logging=stderr", "--v=1", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120, check=True)
    shot = tmp_path / "screenshot.png"
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120, check=True)
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    return dom.stdout, np.asarray(Image.open(shot).convert("RGB")), console


def test_the_browser_check_sees_console_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<html><body><script>console.error("broken page")</script></body></html>')
    _, _, console = browse(page, tmp_path)
    assert any("broken page" in line for line in console)


def test_report_opens_in_a_browser_and_draws_its_map(sample_run, flight, tmp_path):
    dom, screenshot, console = browse(sample_run / "report.html", tmp_path)
    assert console == []
    drawn = circles(dom)
    assert sorted(Path(c["data-uri"]).name for c in drawn) == sorted(flight)
    # Each point's colour is on screen: the browser laid out and painted the map.
    pixels = screenshot.reshape(-1, 3).astype(int)
    for fill in {c["fill"] for c in drawn}:
        rgb = np.array([int(fill[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).max(axis=1) <= 2).sum() >= 10, fill
