"""The morning report of a scoring run: one self-contained HTML page and its heat-map thumbnails.

The inspection team opens this page first, often from a bucket or an e-mail attachment, so it
must stand alone: thumbnails are inlined as ``data:`` URIs, the CSS is inline and nothing is
fetched from elsewhere. Every string that comes from the data (archive member names, error
messages) is HTML-escaped, because drone archives are user files and a member named
``<script>`` must show up as text, not run.
"""
from __future__ import annotations

import base64
import html
import io
import math
import numbers
from typing import Any, Iterable

import numpy as np
from matplotlib import colormaps
from PIL import Image

from pipeline.report_map import PROBABILITY_COLORMAP as HEAT_COLORMAP
from pipeline.report_map import card_id, survey_map
from pipeline.runtime_choice import describe

# Strong enough to see the heat, weak enough to still see the crack underneath it.
HEAT_ALPHA = 0.45
# Below this probability a tile is left untinted: painting near-zero scores would veil the
# whole photo and hide the few tiles that matter.
MIN_VISIBLE_PROBABILITY = 0.05
# Positive-tile outlines: cyan is absent from the colormap and from concrete, so it stays
# visible on top of both.
OUTLINE_COLOR = (0, 229, 255)
# Crack pixels of the mask model: a green absent from the colormap, the outline and concrete.
MASK_COLOR = (57, 255, 20)
# Thousands of errors would make the page unusably heavy; the full list is in the output.
MAX_ERRORS_SHOWN = 500


# --------------------------------------------------------------------------- thumbnails


def _downscale(rgb: np.ndarray, max_side: int) -> Image.Image:
    """A photo whose longest side is at most ``max_side``, without a full-size copy.

    Survey photos are up to ~30 megapixels. Striding (a view, no copy) first skips pixels
    down to about four times the target size, so the copy Pillow makes is a few megabytes;
    any crack wider than the stride (4 px on a 6000 px photo) is still sampled. Lanczos
    resampling then does the rest without aliasing.
    """
    step = max(1, max(rgb.shape[:2]) // (4 * max_side))
    image = Image.fromarray(np.ascontiguousarray(rgb[::step, ::step, :3]), mode="RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def _tile_boxes(tiles: Iterable[dict], scale_x: float, scale_y: float, size: tuple[int, int]
                ) -> Iterable[tuple[int, int, int, int, float]]:
    """Each scored tile's box in thumbnail pixels (at least one pixel wide), with its score."""
    width, height = size
    for tile in tiles:
        probability = float(tile["crack_probability"])
        if not math.isfinite(probability):
            continue
        x0, y0, x1, y1 = (float(v) for v in tile["box"])
        left = min(max(int(math.floor(x0 * scale_x)), 0), width - 1)
        top = min(max(int(math.floor(y0 * scale_y)), 0), height - 1)
        right = min(max(int(math.ceil(x1 * scale_x)), left + 1), width)
        bottom = min(max(int(math.ceil(y1 * scale_y)), top + 1), height)
        yield left, top, right, bottom, probability


def _erode(mask: np.ndarray) -> np.ndarray:
    """One-pixel erosion that treats the outside of the image as empty."""
    padded = np.pad(mask, 1, constant_values=False)
    return (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
            & padded[1:-1, :-2] & padded[1:-1, 2:])


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The inner border, ``width`` pixels thick, of every region of the mask."""
    interior = mask
    for _ in range(width):
        interior = _erode(interior)
    return mask & ~interior


def _mask_pixels(mask_png: bytes, size: tuple[int, int]) -> np.ndarray:
    """The crack mask's preview at the thumbnail's size: a pixel wherever the preview had
    any crack in its area, so a hairline stays visible."""
    with Image.open(io.BytesIO(mask_png)) as preview:
        area = preview.convert("L").resize(size, Image.Resampling.BOX)
    return np.asarray(area) > 0


def heatmap_thumbnail(rgb: np.ndarray, tiles: list[dict], threshold: float,
                      max_side: int = 320, mask_png: bytes | None = None) -> bytes:
    """PNG of the photo, downscaled, with its tile probabilities painted over it, and its
    crack mask's pixels (``mask_png``, ``crackscan.crack_mask.preview``) over those.

    Where tiles overlap a pixel shows the highest of their probabilities, so a crack is never
    hidden by a neighbouring tile that saw only its edge. The tint fades in from
    ``MIN_VISIBLE_PROBABILITY`` to full strength at ``threshold``, so intact areas keep their
    true colours. The area covered by tiles at or above the threshold is outlined as one
    region rather than tile by tile: tiles overlap (stride < size), and a lattice of
    overlapping squares would hide the very crack an inspector is meant to look at.
    """
    height, width = rgb.shape[:2]
    photo = _downscale(rgb, max_side)
    thumb_width, thumb_height = photo.size
    boxes = list(_tile_boxes(tiles, thumb_width / width, thumb_height / height, photo.size))

    heat = np.zeros((thumb_height, thumb_width), dtype=np.float32)
    for left, top, right, bottom, probability in boxes:
        region = heat[top:bottom, left:right]
        np.maximum(region, probability, out=region)

    positive = np.zeros(heat.shape, dtype=bool)
    for left, top, right, bottom, probability in boxes:
        if probability >= threshold:
            positive[top:bottom, left:right] = True

    ramp = max(threshold - MIN_VISIBLE_PROBABILITY, 1e-6)
    alpha = HEAT_ALPHA * np.clip((heat - MIN_VISIBLE_PROBABILITY) / ramp, 0.0, 1.0)
    colors = colormaps[HEAT_COLORMAP](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    base = np.asarray(photo, dtype=np.float32)
    blended = base + (colors - base) * alpha[..., None]
    line_width = max(1, round(max(thumb_width, thumb_height) / 160))
    blended[_outline(positive, line_width)] = OUTLINE_COLOR
    if mask_png is not None:
        blended[_mask_pixels(mask_png, photo.size)] = MASK_COLOR
    overlay = Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), mode="RGB")

    buffer = io.BytesIO()
    # The fastest zlib level: on photos the default level 6 takes 2.7x as long and is no
    # smaller (87 KB vs 79 KB for a survey thumbnail); optimize=True costs ~150 ms each.
    overlay.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# --------------------------------------------------------------------------- HTML report


def _e(value: Any) -> str:
    """Escape anything for HTML text and attribute values alike."""
    return html.escape(str(value), quote=True)


def _count(value: Any) -> str:
    """Thousands separators for counts, which may arrive as NumPy integers from a combiner."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f"{int(value):,}"
    return _e(value)


def _duration(seconds: float) -> str:
    """``1h 02m`` reads faster than ``3723.4 s``; seconds stop mattering past an hour."""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _stat(label: str, value: str, tone: str = "") -> str:
    """One headline number; ``value`` is already escaped or formatted by us."""
    return (f'<div class="stat {tone}"><div class="value">{value}</div>'
            f'<div class="label">{label}</div></div>')


def _stats(summary: dict) -> str:
    """Headline numbers, in the order a reader asks for them; absent keys are skipped."""
    formatters = [
        ("seen", "Seen", _count, ""),
        ("scored", "Scored", _count, ""),
        ("failed", "Failed", _count, "bad" if summary.get("failed") else ""),
        ("positive", "Positive", _count, "warn" if summary.get("positive") else ""),
        ("crack_rate", "Crack rate", lambda v: f"{float(v) * 100:.1f}%", ""),
        ("reused", "Reused", _count, ""),
        ("images_per_second", "Images / s", lambda v: f"{float(v):,.1f}", ""),
        ("wall_seconds", "Wall time", _duration, ""),
    ]
    if summary.get("metadata_warnings"):
        # Shown only when some photo's position, time or camera was left out: a zero on
        # every night's report would teach readers to skip it.
        formatters.append(("metadata_warnings", "Metadata warnings", _count, "warn"))
    return "".join(_stat(label, render(summary[key]), tone)
                   for key, label, render, tone in formatters
                   if summary.get(key) is not None)


def _accounting(summary: dict) -> str:
    """Every listed input must end up scored or failed, with its one row in the files;
    anything else means lost images."""
    if any(summary.get(key) is None for key in ("seen", "scored", "failed")):
        return ('<p class="accounting unknown">Accounting not available: the summary lacks '
                'seen, scored or failed counts.</p>')
    seen, scored, failed = summary["seen"], summary["scored"], summary["failed"]
    problems = (summary.get("accounting") or {}).get("problems") or []
    if problems:
        return (f'<p class="accounting mismatch">&#10007; Accounting mismatch: '
                f'{_e("; ".join(problems))}. Some images were lost or counted twice; do not '
                f'trust this run\'s totals.</p>')
    if seen == scored + failed:
        return (f'<p class="accounting ok">&#10003; All {_count(seen)} images accounted for: '
                f'{_count(scored)} scored + {_count(failed)} failed.</p>')
    return (f'<p class="accounting mismatch">&#10007; Accounting mismatch: {_count(seen)} seen '
            f'but {_count(scored)} scored + {_count(failed)} failed = '
            f'{_count(scored + failed)} ({_count(seen - scored - failed)} unaccounted). '
            f'Some images were lost or counted twice; do not trust this run\'s totals.</p>')


def _sources(summary: dict) -> str:
    """What was scored and where it went, so a forwarded report explains itself."""
    rows = [f"<li><span>input</span><code>{_e(path)}</code></li>"
            for path in summary.get("inputs") or []]
    if summary.get("output"):
        rows.append(f"<li><span>output</span><code>{_e(summary['output'])}</code></li>")
    return f'<ul class="sources">{"".join(rows)}</ul>' if rows else ""


def _ground_sampling(summary: dict) -> str:
    """How many photos have a scale in millimetres, and why the others have none: a
    measurement team must know before the night which photos can have crack widths in mm."""
    known = summary.get("gsd_known")
    missing = {reason: count for reason, count in
               (summary.get("gsd_missing_by_reason") or {}).items() if count}
    if not known and not missing:
        return ""
    text = (f"Ground sampling distance known for {_count(known or 0)} of "
            f"{_count((known or 0) + sum(missing.values()))} photos")
    if summary.get("gsd_mm") is not None:
        text += f" ({float(summary['gsd_mm']):g} mm/px from --gsd-mm)"
    if missing:
        reasons = ", ".join(f"{_count(count)} {_e(reason.replace('_', ' '))}"
                            for reason, count in missing.items())
        text += f"; none for {_count(sum(missing.values()))} ({reasons})"
    return f'<p class="gsd">{text}.</p>'


def _length(pixels: Any, millimetres: Any) -> str:
    text = f"{float(pixels):,.1f} px"
    return text + (f" ({float(millimetres):,.2f} mm)" if millimetres is not None else "")


def _measurements(image: dict) -> str:
    """The crack's length and widths from its mask, in millimetres too where the GSD is
    known; nothing where no crack was measured."""
    if image.get("crack_width_max_px") is None:
        return ""
    parts = [f"crack {_length(image['crack_length_px'], image.get('crack_length_mm'))} long",
             f"widest {_length(image['crack_width_max_px'], image.get('crack_width_max_mm'))}",
             "median width " + _length(image["crack_width_median_px"],
                                       image.get("crack_width_median_mm"))]
    return f'<div class="meta crack">{" &middot; ".join(parts)}</div>'


def _crack_masks(summary: dict) -> str:
    """Whether cracks were measured, on how many photos and tiles, and why not where not."""
    masks = summary.get("masks")
    if not masks:
        return ""
    if not masks.get("run"):
        return f'<p class="masks">No crack masks: {_e(masks.get("why", ""))}.</p>'
    text = (f"Crack masks ({_e(masks.get('file'))}): {_count(masks.get('images_measured', 0))} "
            f"photos measured on {_count(masks.get('tiles_run', 0))} tiles, "
            f"{_count(masks.get('with_crack', 0))} with a crack")
    if masks.get("errors"):
        text += f"; {_count(masks['errors'])} failed (see the errors)"
    return f'<p class="masks">{text}.</p>'


def _image_card(image: dict) -> str:
    """One grid cell: thumbnail (or why there is none), score, name and tile counts."""
    probability = float(image.get("crack_probability", float("nan")))
    threshold = image.get("threshold")
    positive = threshold is not None and probability >= float(threshold)
    png = image.get("thumbnail_png")
    if png:
        encoded = base64.b64encode(png).decode("ascii")
        picture = (f'<img src="data:image/png;base64,{encoded}" '
                   f'alt="heat map of {_e(image.get("uri", ""))}">')
    else:
        picture = '<div class="no-thumb">image could not be re-read for a thumbnail</div>'
    bar = min(max(probability, 0.0), 1.0) * 100 if math.isfinite(probability) else 0.0
    details = []
    if image.get("tiles") is not None:
        details.append(f"{_count(image.get('positive_tiles', 0))} / {_count(image['tiles'])} "
                       "tiles positive")
    if image.get("width") and image.get("height"):
        details.append(f"{_count(image['width'])}&times;{_count(image['height'])} px")
    if threshold is not None:
        details.append(f"threshold {float(threshold):.2f}")
    where = []
    if image.get("latitude") is not None and image.get("longitude") is not None:
        where.append(f"{float(image['latitude']):.6f}, {float(image['longitude']):.6f}")
        if image.get("altitude_m") is not None:
            where.append(f"{float(image['altitude_m']):.0f} m")
    if image.get("captured_at"):
        where.append(_e(image["captured_at"]))
    place = f'<div class="meta where">{" &middot; ".join(where)}</div>' if where else ""
    crack = _measurements(image)
    return f"""
<figure class="card{' positive' if positive else ''}" id="{card_id(str(image.get("uri", "")))}">
  {picture}
  <figcaption>
    <div class="prob"><span class="pvalue">{probability:.3f}</span>
      <span class="badge">{_e(image.get("label", ""))}</span></div>
    <div class="bar"><div style="width:{bar:.1f}%"></div></div>
    <div class="uri">{_e(image.get("uri", ""))}</div>
    <div class="meta">{" &middot; ".join(details)}</div>
    {crack}
    {place}
  </figcaption>
</figure>"""


def _legend() -> str:
    """How to read the thumbnails: the same colormap and outline colour they were drawn with."""
    colormap = colormaps[HEAT_COLORMAP]
    stops = ", ".join(
        "rgba({}, {}, {}, {:.2f})".format(*(round(c * 255) for c in colormap(p)[:3]),
                                          0.25 + 0.75 * p)
        for p in np.linspace(0.0, 1.0, 6))
    return (f'<div class="legend"><span>tile crack probability 0</span>'
            f'<span class="ramp" style="background:linear-gradient(90deg, {stops})"></span>'
            f'<span>1</span><span class="outline"></span>'
            f'<span>area of tiles at or above the threshold</span>'
            f'<span class="mask"></span><span>crack mask</span></div>')


def _errors(errors: list[dict], by_stage: dict[str, int] | None) -> str:
    """Counts per stage over all errors, then the first ``MAX_ERRORS_SHOWN`` of those given.

    ``by_stage`` holds the run's counts when ``errors`` are only the first of each stage
    (a run's errors can be millions; its files keep them all); without it the counts are
    those of ``errors``.
    """
    if by_stage is None:
        by_stage = {}
        for error in errors:
            stage = str(error.get("stage", "?"))
            by_stage[stage] = by_stage.get(stage, 0) + 1
    total = sum(by_stage.values())
    if not total:
        return '<p class="empty">No errors: every image was read and scored.</p>'
    stages = " ".join(f'<span class="chip">{_e(stage)} <b>{count:,}</b></span>'
                      for stage, count in sorted(by_stage.items(), key=lambda kv: -kv[1])
                      if count)
    shown = errors[:MAX_ERRORS_SHOWN]
    rows = "".join(
        f"<tr><td class=\"stage\">{_e(error.get('stage', ''))}</td>"
        f"<td class=\"uri\">{_e(error.get('uri', ''))}</td>"
        f"<td>{_e(error.get('error', ''))}</td></tr>"
        for error in shown)
    hidden = total - len(shown)
    more = (f'<p class="more">Showing {len(shown):,} of {total:,} errors (the first of each '
            f'stage); {hidden:,} more are not shown here but are in the run\'s error output.'
            f'</p>' if hidden > 0 else "")
    return f"""<div class="chips">{stages}</div>
{more}
<table class="errors">
  <thead><tr><th>Stage</th><th>Input</th><th>Error</th></tr></thead>
  <tbody>{rows}</tbody>
</table>"""


_CSS = """
:root { --ink:#1d2430; --muted:#667085; --line:#e4e7ec; --bg:#f5f6f8; --card:#fff;
        --accent:#d9480f; --ok:#2b8a3e; --bad:#c92a2a; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { background:#1d2430; color:#fff; padding:24px 40px 20px; }
header h1 { margin:0; font-size:24px; font-weight:650; letter-spacing:.2px; }
header .model { color:#aab4c3; margin-top:4px; font-size:14px; }
header .model code { color:#fff; }
main { padding:24px 40px 48px; max-width:1500px; }
h2 { font-size:18px; margin:32px 0 12px; }
h2 small { color:var(--muted); font-weight:400; font-size:14px; margin-left:6px; }
code, .uri { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
             font-size:12.5px; }
.stats { display:grid; grid-template-columns:repeat(auto-fit, minmax(140px, 1fr)); gap:12px; }
.stat { background:var(--card); border:1px solid var(--line); border-radius:10px;
        padding:14px 16px; }
.stat .value { font-size:26px; font-weight:650; font-variant-numeric:tabular-nums; }
.stat .label { color:var(--muted); font-size:13px; text-transform:uppercase;
               letter-spacing:.6px; }
.stat.warn .value { color:var(--accent); }
.stat.bad .value { color:var(--bad); }
.accounting { margin:16px 0 0; padding:10px 14px; border-radius:8px; font-weight:550; }
.accounting.ok { background:#ebfbee; color:var(--ok); border:1px solid #b2f2bb; }
.accounting.mismatch { background:#fff5f5; color:var(--bad); border:1px solid #ffc9c9; }
.accounting.unknown { background:#fff9db; color:#8d6e00; border:1px solid #ffec99; }
.sources { list-style:none; padding:0; margin:12px 0 0; color:var(--muted); }
.sources li { margin:2px 0; overflow-wrap:anywhere; }
.sources span { display:inline-block; width:56px; font-size:12px; text-transform:uppercase; }
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(260px, 1fr)); gap:16px; }
.card { margin:0; background:var(--card); border:1px solid var(--line); border-radius:10px;
        overflow:hidden; display:flex; flex-direction:column; }
.card.positive { border-top:4px solid var(--accent); }
.card img, .no-thumb { width:100%; aspect-ratio:4/5; object-fit:contain; background:#e9ecf0;
                       display:block; }
.no-thumb { display:flex; align-items:center; justify-content:center; color:var(--muted);
            font-size:13px; padding:16px; text-align:center; }
figcaption { padding:10px 12px 12px; }
.prob { display:flex; align-items:baseline; justify-content:space-between; gap:8px; }
.pvalue { font-size:22px; font-weight:650; font-variant-numeric:tabular-nums; }
.badge { font-size:12px; padding:2px 8px; border-radius:999px; background:#eef0f3;
         color:var(--muted); }
.positive .badge { background:#fff0e6; color:var(--accent); }
.bar { height:5px; background:#eef0f3; border-radius:3px; margin:6px 0 8px; overflow:hidden; }
.bar div { height:100%; background:linear-gradient(90deg, #fcb045, #d9480f); }
.card .uri { overflow-wrap:anywhere; color:var(--ink); }
.meta { color:var(--muted); font-size:13px; margin-top:4px; }
.legend { display:flex; align-items:center; gap:8px; color:var(--muted); font-size:13px;
          margin:-4px 0 14px; }
.legend .ramp { width:180px; height:10px; border-radius:3px; }
.legend .outline { width:14px; height:10px; border:2px solid rgb(0,229,255); }
.legend .mask { width:14px; height:4px; background:rgb(57,255,20); }
.chips { margin-bottom:10px; }
.chip { display:inline-block; background:#fff; border:1px solid var(--line);
        border-radius:999px; padding:2px 10px; margin:0 6px 6px 0; font-size:13px; }
table.errors { width:100%; border-collapse:collapse; background:var(--card);
               border:1px solid var(--line); border-radius:10px; overflow:hidden; }
.errors th { text-align:left; font-size:12px; text-transform:uppercase; letter-spacing:.6px;
             color:var(--muted); background:#fafbfc; }
.errors th, .errors td { padding:7px 12px; border-bottom:1px solid var(--line);
                         vertical-align:top; }
.errors tr:last-child td { border-bottom:none; }
.errors td.uri { overflow-wrap:anywhere; max-width:480px; }
.errors td.stage { white-space:nowrap; color:var(--muted); }
.more { margin:0 0 10px; color:#8d6e00; }
.empty { color:var(--muted); }
.survey-map { max-width:100%; height:auto; border:1px solid var(--line); border-radius:10px;
              background:var(--card); }
.survey-map .point:hover { stroke:#1d2430; stroke-width:3; }
.card:target { outline:3px solid rgb(0,229,255); }
"""


def render_report(summary: dict, top_images: list[dict], errors: list[dict],
                  points: Iterable[dict] = ()) -> str:
    """The whole run on one page: counts, whether they add up, the worst images, the errors.

    The accounting verdict is stated explicitly because a pipeline that silently drops images
    looks healthy in every other number; the most-cracked images come first in the grid so
    the team starts the day with the photos that need a human, and the map shows where on
    the structure they are. ``errors`` are the rows to list; the counts per stage come from
    the summary's ``failed_by_stage`` when it has them. ``points`` are the geotagged photos
    (:func:`pipeline.geo.point_of`).
    """
    model = summary.get("model_version")
    model_line = f'<div class="model">model <code>{_e(model)}</code></div>' if model else ""
    if summary.get("inference"):  # which file ran, why, and the rates it was chosen on
        model_line += f'<div class="model">{_e(describe(summary["inference"]))}</div>'

    title = "Crack scan report" + (f" &middot; {_e(summary['output'])}"
                                   if summary.get("output") else "")
    points = list(points)
    ranked = sorted(top_images, key=lambda image: -float(image.get("crack_probability", 0.0)))
    by_stage = summary.get("failed_by_stage")
    failed = sum(by_stage.values()) if by_stage is not None else len(errors)
    cards = (_legend() + '<section class="grid">'
             + "".join(_image_card(image) for image in ranked) + "</section>"
             if ranked else '<p class="empty">No scored images to show.</p>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
  <h1>Crack scan report</h1>
  {model_line}
</header>
<main>
  <section class="stats">{_stats(summary)}</section>
  {_accounting(summary)}
  {_sources(summary)}
  {_ground_sampling(summary)}
  {_crack_masks(summary)}
  <h2>Survey map <small>{_count(len(points))} geotagged photos; colour = crack
    probability, ringed = positive, dashed = flight order</small></h2>
  {survey_map(points, {str(image.get("uri")) for image in ranked},
              str(summary.get("positive_class", "Positive")))}
  <h2>Most cracked images <small>{len(ranked):,} shown, highest probability first</small></h2>
  {cards}
  <h2>Errors <small>{failed:,} recorded</small></h2>
  {_errors(errors, by_stage)}
</main>
</body>
</html>
"""
