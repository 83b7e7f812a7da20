"""The survey drawn as a map inside the report: where each photo was taken, coloured by how
likely it holds a crack.

The report must open from an e-mail attachment on a site laptop without internet, so there
are no web map tiles: the points are drawn as inline SVG on a local flat projection
(equirectangular about the survey's mean latitude), which over the few hundred metres of a
bridge or a wall is true to scale well within a GPS fix's error. A scale bar gives metres.
"""
from __future__ import annotations

import hashlib
import html
import math
from typing import Any, Iterable

from matplotlib import colormaps

from pipeline.geo import METRES_PER_DEGREE_LATITUDE, METRES_PER_DEGREE_LONGITUDE_AT_EQUATOR

# One colormap for a crack probability throughout the report (heat maps and map): perceptually
# uniform and dark-to-bright, so "more yellow" reads as "more likely a crack" even in greyscale
# print-outs, and it stands out against grey concrete and asphalt.
PROBABILITY_COLORMAP = "inferno"
WIDTH, HEIGHT, MARGIN = 960, 560, 36
# Points beyond this are not drawn (the most likely cracks are kept): a page of a million
# SVG circles would not open; the GeoJSON holds them all.
MAX_MAP_POINTS = 20_000


def card_id(uri: str) -> str:
    """The HTML id of an image's card: stable, and safe whatever the uri holds."""
    return "card-" + hashlib.sha1(uri.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _color(probability: float) -> str:
    red, green, blue = (round(c * 255) for c in colormaps[PROBABILITY_COLORMAP](
        min(max(probability, 0.0), 1.0))[:3])
    return f"#{red:02x}{green:02x}{blue:02x}"


def _metres(points: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """East and north of the survey's centre, in metres; longitudes are unwrapped about the
    first point so a survey across the antimeridian stays in one piece."""
    reference = points[0]["longitude"]
    longitudes = [((p["longitude"] - reference + 180.0) % 360.0) - 180.0 for p in points]
    mean_latitude = sum(p["latitude"] for p in points) / len(points)
    mean_longitude = sum(longitudes) / len(longitudes)
    east = METRES_PER_DEGREE_LONGITUDE_AT_EQUATOR * math.cos(math.radians(mean_latitude))
    return [((lon - mean_longitude) * east,
             (p["latitude"] - mean_latitude) * METRES_PER_DEGREE_LATITUDE)
            for p, lon in zip(points, longitudes)]


def _scale_bar(metres_per_pixel: float) -> tuple[float, str]:
    """A round length (1, 2 or 5 times a power of ten) near a fifth of the map's width."""
    target = WIDTH / 5 * metres_per_pixel
    power = 10 ** math.floor(math.log10(target)) if target > 0 else 1.0
    length = max((step * power for step in (1, 2, 5) if step * power <= target), default=power)
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    return length / metres_per_pixel, label


def _tooltip(point: dict[str, Any]) -> str:
    lines = [point["uri"], f"crack probability {float(point['crack_probability']):.3f} "
                           f"({point.get('label')})",
             f"{point['latitude']:.6f}, {point['longitude']:.6f}"]
    if point.get("captured_at"):
        lines.append(str(point["captured_at"]))
    return html.escape("\n".join(lines))


def survey_map(points: Iterable[dict[str, Any]], carded: set[str], positive_class: str) -> str:
    """The ``<svg>`` map, or a line saying why there is none. A point whose photo has a card
    in the report links to it; every point names its photo, score, position and time."""
    points = sorted(points, key=lambda p: -float(p["crack_probability"]))
    if not points:
        return ('<p class="empty">No photo carries a GPS position in its EXIF, so there is no '
                'map.</p>')
    drawn = points[:MAX_MAP_POINTS]
    xy = _metres(drawn)
    span_x = max(x for x, _ in xy) - min(x for x, _ in xy)
    span_y = max(y for _, y in xy) - min(y for _, y in xy)
    usable_w, usable_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    # At least 10 m across, so one photo or a hover on one spot is not magnified to nonsense.
    metres_per_pixel = max(span_x / usable_w, span_y / usable_h, 10.0 / usable_w)
    mid_x = (max(x for x, _ in xy) + min(x for x, _ in xy)) / 2
    mid_y = (max(y for _, y in xy) + min(y for _, y in xy)) / 2

    def pixel(x: float, y: float) -> tuple[float, float]:
        return (WIDTH / 2 + (x - mid_x) / metres_per_pixel,
                HEIGHT / 2 - (y - mid_y) / metres_per_pixel)

    timed = sorted((p["captured_at"], pixel(*m)) for p, m in zip(drawn, xy)
                   if p.get("captured_at"))
    path = " ".join(f"{px:.1f},{py:.1f}" for _, (px, py) in timed)
    flight = (f'<polyline class="flight" points="{path}" fill="none" stroke="#8a94a6" '
              f'stroke-width="1.2" stroke-dasharray="4 3"/>' if len(timed) > 1 else "")
    circles = []
    # Least likely first, so the likely cracks are drawn on top where points overlap.
    for point, (x, y) in reversed(list(zip(drawn, xy))):
        px, py = pixel(x, y)
        probability = float(point["crack_probability"])
        positive = point.get("label") == positive_class
        circle = (f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="{7 if positive else 5}" '
                  f'fill="{_color(probability)}" stroke="{"#d9480f" if positive else "#ffffff"}" '
                  f'stroke-width="{2 if positive else 1}" data-uri="{html.escape(point["uri"])}">'
                  f"<title>{_tooltip(point)}</title></circle>")
        if point["uri"] in carded:
            circle = f'<a href="#{card_id(point["uri"])}">{circle}</a>'
        circles.append(circle)
    bar_px, bar_label = _scale_bar(metres_per_pixel)
    # Both sit in the margins, which no point reaches.
    left, bottom = MARGIN, HEIGHT - MARGIN / 3
    scale = (f'<g class="scale"><line x1="{left}" y1="{bottom}" x2="{left + bar_px:.1f}" '
             f'y2="{bottom}" stroke="#1d2430" stroke-width="3"/>'
             f'<text x="{left + bar_px + 6:.1f}" y="{bottom + 4}" font-size="12">{bar_label}'
             f'</text></g>')
    north = (f'<g class="north"><text x="{WIDTH - MARGIN / 2}" y="14" font-size="13" '
             f'text-anchor="middle" font-weight="650">N</text><line x1="{WIDTH - MARGIN / 2}" '
             f'y1="17" x2="{WIDTH - MARGIN / 2}" y2="{MARGIN - 4}" stroke="#1d2430" '
             f'stroke-width="2"/></g>')
    note = (f'<p class="more">The {len(points) - len(drawn):,} least likely of '
            f'{len(points):,} positions are not drawn; cracks.geojson holds them all.</p>'
            if len(drawn) < len(points) else "")
    return (f'{note}<svg class="survey-map" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
            f'height="{HEIGHT}" role="img" aria-label="map of {len(drawn):,} photo positions">'
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#f4f6f8"/>{flight}'
            f'{"".join(circles)}{scale}{north}</svg>')
