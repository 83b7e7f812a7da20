"""Crack masks in the scoring pipeline: a real mask model on real photos, through the public
entry point.

The mask model is real and deterministic: ``bench/line_mask_model.py``'s hand-set LiteRT file
(pixels darker than their neighbourhood), added with its card section to a copy of the
shipped classifier's folder. Cracks of known width are drawn as jagged lines into real
photos of intact concrete, which the shipped classifier flags, while the intact photos stay
unflagged: the mask model must run on the flagged images' tiles only, and read the widths
drawn. The checked-in 227 px patches are scored whole (resized to one tile and back); the
448 px survey photos of ``../shared`` are cut into nine overlapping tiles and stitched.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench.line_mask_model import MASK_FILE, with_line_mask_model
from crackscan.crack_mask import measure_mask, preview, stitch, tiles_to_mask
from crackscan.crack_measure import measure
from crackscan.mask_spec import MaskSpecError, read_mask_spec
from crackscan.tiles import plan_tiles
from pipeline import geo
from pipeline.bigquery_sink import prediction_schema
from pipeline.inference import SHIPPED_MODEL_DIR
from pipeline.masks import CutMaskTilesFn, MaskJob, mask_path
from pipeline.records import MEASUREMENT_COLUMNS, ScoredImage, TileScore
from pipeline.score import SetupError, run
from scoring_helpers import concrete, read_jsonl, read_predictions, score

WIDTHS = (2, 4, 8, 16)
CRACK_COLOUR = (38, 36, 35)
GSD_MM = 0.2
# Intact survey photos the shipped classifier scores below its tile threshold on every
# tile, and whose own dark grain the stand-in mask model leaves alone.
INTACT_SURVEY = ("noncrack_noncrack_concrete_wall_16_1.jpg.jpg",
                 "noncrack_noncrack_concrete_wall_12_9.jpg.jpg",
                 "noncrack_noncrack_concrete_wall_15_5.jpg.jpg",
                 "noncrack_noncrack_concrete_wall_30_2.jpg.jpg",
                 "noncrack_noncrack_concrete_wall_28_0.jpg.jpg")


@pytest.fixture(scope="module")
def mask_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped classifier's folder with the stand-in mask model and its card section."""
    return with_line_mask_model(Path(SHIPPED_MODEL_DIR),
                                tmp_path_factory.mktemp("masked") / "model")


def jagged(start: tuple[int, int], steps: int, seed: int = 3) -> list[tuple[int, int]]:
    """A crack's path: 16 px steps across, up to 10 px up or down each."""
    rng = np.random.default_rng(seed)
    points = [start]
    for _ in range(steps):
        x, y = points[-1]
        points.append((x + 16, y + int(rng.integers(-10, 11))))
    return points


def draw_crack(photo: Path, out: Path, width: int, path: list[tuple[int, int]]) -> float:
    """The photo with a crack of ``width`` px drawn along ``path``, as PNG at ``out``; the
    widest point that :func:`measure` reads on the pixels the drawing changed."""
    intact = Image.open(photo).convert("RGB")
    drawn = intact.copy()
    ImageDraw.Draw(drawn).line(path, fill=CRACK_COLOUR, width=width, joint="curve")
    drawn.save(out)
    truth = np.any(np.asarray(drawn) != np.asarray(intact), axis=2)
    return measure(truth).width_max_px


def assert_width(read: float, truth: float, drawn: int, slack_px: float = 0.0) -> None:
    """The issue's bar: within 25% of the truth, or 1 px for the thinnest; ``slack_px``
    more where the photo was resized to a tile and its mask back."""
    allowed = max(0.25 * truth, 1.0 if drawn <= 2 else 0.0) + slack_px
    assert abs(read - truth) <= allowed, (read, truth)


def mask_pixels(out: Path, relative: str, size: tuple[int, int]) -> np.ndarray:
    with Image.open(out / relative) as png:
        assert png.format == "PNG" and png.mode == "L" and png.size == size
        pixels = np.asarray(png)
    assert set(np.unique(pixels)) <= {0, 255}
    return pixels == 255


# --------------------------------------------------------------------------- pipeline runs


def test_patches_measure_drawn_widths_and_write_masks(tmp_path: Path, mask_model_dir: Path,
                                                      real_data: Path):
    """227 px patches (one tile, resized to 224 px and their masks back, which blurs a thin
    crack by up to a pixel): cracked ones measured, in mm at --gsd-mm; intact ones
    unmeasured, with empty masks; an image that fails to decode stays an error of its
    stage, without a mask."""
    photos = tmp_path / "photos"
    photos.mkdir()
    negatives = concrete(real_data, "Negative", 6)
    truths = {}
    for width, patch in zip(WIDTHS, negatives):
        name = f"crack-{width}px.png"
        truths[name] = (width, draw_crack(patch, photos / name, width, jagged((10, 110), 13)))
    for patch in negatives[4:]:
        shutil.copy(patch, photos / f"intact-{patch.name}")
    (photos / "broken.jpg").write_bytes(negatives[0].read_bytes()[:300])
    out = tmp_path / "out"

    summary = score("--input", photos, "--model", mask_model_dir, "--output", out,
                    "--write-masks", "--gsd-mm", str(GSD_MM))

    assert summary["accounting_ok"] and summary["seen"] == 7 and summary["scored"] == 6
    errors = read_jsonl(out, "errors")
    assert [(Path(e["uri"]).name, e["stage"]) for e in errors] == [("broken.jpg", "decode")]
    rows = {Path(uri).name: row for uri, row in read_predictions(out).items()}
    for name, (width, truth) in truths.items():
        row = rows[name]
        assert row["label"] == "Positive"
        assert_width(float(row["crack_width_max_px"]), truth, width, slack_px=1.0)
        for column in ("crack_length", "crack_width_max", "crack_width_median"):
            assert float(row[f"{column}_mm"]) == pytest.approx(
                float(row[f"{column}_px"]) * GSD_MM, abs=2e-3)
        assert float(row["crack_length_px"]) > 180  # the path runs 208 px across
        mask = mask_pixels(out, row["mask"], (227, 227))
        assert mask.any() and row["mask"] == mask_path(row["uri"])
    for name in (f"intact-{patch.name}" for patch in negatives[4:]):
        row = rows[name]
        assert row["label"] == "Negative" and row["positive_tiles"] == "0"
        assert all(row[column] == "" for column in MEASUREMENT_COLUMNS)
        assert not mask_pixels(out, row["mask"], (227, 227)).any()
    masks = sorted(path.name for path in (out / "masks").iterdir())
    assert len(masks) == len(set(masks)) == 6 and not (out / "masks" / "broken.png").exists()
    assert summary["masks"] | {"why": None} == {
        "run": True, "why": None, "file": MASK_FILE,
        "version": hashlib.sha256((mask_model_dir / MASK_FILE).read_bytes()).hexdigest()[:12],
        "threshold": 0.5, "write_masks": True, "images_measured": 4, "tiles_run": 4,
        "with_crack": 4, "masks_written": 6, "errors": 0}
    assert summary["accounting"]["in_files"]["masks"] == 6
    report = (out / "report.html").read_text()
    assert "widest" in report and "4 photos measured on 4 tiles" in report


def test_unflagged_survey_photos_run_no_mask_tiles(tmp_path: Path, mask_model_dir: Path,
                                                   shared_dir: Path):
    """Nine-tile survey photos: the mask model runs on the flagged images' tiles (and
    their neighbours) only, never on an intact photo's; each crack is stitched from its
    overlapping tiles and measured as drawn."""
    intact = [shared_dir / "data" / "survey" / "no_crack" / name for name in INTACT_SURVEY]
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in intact:
        shutil.copy(photo, photos / photo.name)
    truths = {}
    for width in WIDTHS:
        name = f"crack-{width}px.png"
        truths[name] = (width, draw_crack(intact[0], photos / name, width,
                                          jagged((40, 200), 23)))
    # A short crack in one corner: its tiles and their neighbours, not the whole photo.
    corner = draw_crack(intact[1], photos / "corner.png", 4, jagged((10, 60), 10))
    out = tmp_path / "out"

    summary = score("--input", photos, "--model", mask_model_dir, "--output", out,
                    "--write-tiles")

    rows = {Path(uri).name: row for uri, row in read_predictions(out).items()}
    for name in INTACT_SURVEY:
        assert rows[name]["positive_tiles"] == "0" and rows[name]["crack_length_px"] == ""
        assert rows[name]["mask"] == ""
    for name, (width, truth) in truths.items():
        assert rows[name]["positive_tiles"] != "0"
        assert_width(float(rows[name]["crack_width_max_px"]), truth, width)
        assert float(rows[name]["crack_length_px"]) == pytest.approx(418, rel=0.1)  # drawn
        assert rows[name]["crack_width_max_mm"] == ""  # no GSD: the photos carry no EXIF
    assert_width(float(rows["corner.png"]["crack_width_max_px"]), corner, 4)
    tiles = {Path(row["uri"]).name: row for row in read_jsonl(out, "tiles")}
    assert tiles  # every tile's score is still written, masks or not
    flagged = {name: plan_tiles(448, 448, 224, 168, 10**9) for name in rows}
    scores = {}
    for row in read_jsonl(out, "tiles"):
        scores.setdefault(Path(row["uri"]).name, {})[row["tile"]] = row["crack_probability"]
    threshold = summary["threshold"]
    expected = sum(len(tiles_to_mask(flagged[name], [scores[name][i] for i in range(9)],
                                     threshold)) for name in rows)
    assert summary["masks"]["tiles_run"] == expected
    assert summary["masks"]["tiles_run"] == 9 * len(truths) + 4  # the corner: tiles 0, 1, 3, 4
    assert summary["masks"]["images_measured"] == len(truths) + 1
    assert summary["masks"]["masks_written"] == 0 and not (out / "masks").exists()
    assert summary["accounting_ok"]


def test_a_mask_that_cannot_be_written_is_an_error_row(tmp_path: Path, mask_model_dir: Path,
                                                       real_data: Path):
    """OUT/masks is a file: each scored image's PNG fails, and the image is an error row at
    stage write-mask, none lost; --no-masks scores the same photos without a mask."""
    photos = tmp_path / "photos"
    photos.mkdir()
    patch = concrete(real_data, "Negative", 2)
    draw_crack(patch[0], photos / "cracked.png", 4, jagged((10, 110), 13))
    shutil.copy(patch[1], photos / "intact.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "masks").write_text("in the way")

    summary = score("--input", photos, "--model", mask_model_dir, "--output", out,
                    "--write-masks")

    assert summary["accounting_ok"] and (summary["seen"], summary["scored"]) == (2, 0)
    errors = {Path(e["uri"]).name: e for e in read_jsonl(out, "errors")}
    assert set(errors) == {"cracked.png", "intact.jpg"}
    assert {e["stage"] for e in errors.values()} == {"write-mask"}
    assert all(str(out / "masks") in e["error"] for e in errors.values())
    assert summary["failed_by_stage"]["write-mask"] == 2 and summary["masks"]["errors"] == 2

    verdicts = score("--input", photos, "--model", mask_model_dir, "--output",
                     tmp_path / "verdicts", "--no-masks")
    assert verdicts["masks"]["run"] is False and verdicts["masks"]["why"] == "--no-masks"
    rows = read_predictions(tmp_path / "verdicts")
    assert all(row[column] == "" for row in rows.values() for column in MEASUREMENT_COLUMNS)


def test_rows_carried_over_keep_their_measurements_but_not_a_mask(
        tmp_path: Path, mask_model_dir: Path, real_data: Path):
    photos = tmp_path / "photos"
    photos.mkdir()
    draw_crack(concrete(real_data, "Negative", 1)[0], photos / "cracked.png", 8,
               jagged((10, 110), 13))
    score("--input", photos, "--model", mask_model_dir, "--output", tmp_path / "first",
          "--write-masks")
    summary = score("--input", photos, "--model", mask_model_dir, "--output",
                    tmp_path / "second", "--skip-scored", tmp_path / "first", "--write-masks")

    first = read_predictions(tmp_path / "first")
    second = read_predictions(tmp_path / "second")
    assert summary["reused"] == 1 and summary["accounting_ok"]
    for row in second.values():
        earlier = first[row["uri"]]
        assert row["mask"] == "" and earlier["mask"]
        assert [row[c] for c in MEASUREMENT_COLUMNS] == [earlier[c] for c in MEASUREMENT_COLUMNS]


# --------------------------------------------------------------------------- launch checks


def test_mask_requests_the_card_cannot_meet_stop_the_run(tmp_path: Path, mask_model_dir: Path,
                                                         real_data: Path):
    photos = str(real_data / "data" / "concrete" / "Negative")
    with pytest.raises(SetupError, match="--write-masks: .*lists no mask_model"):
        run(["--input", photos, "--model", SHIPPED_MODEL_DIR, "--output",
             str(tmp_path / "a"), "--write-masks"])
    with pytest.raises(SetupError, match="--no-masks"):
        run(["--input", photos, "--model", str(mask_model_dir), "--output",
             str(tmp_path / "b"), "--write-masks", "--no-masks"])


def test_dry_run_says_whether_masks_run_and_why(tmp_path: Path, mask_model_dir: Path,
                                                real_data: Path,
                                                capsys: pytest.CaptureFixture):
    photos = str(real_data / "data" / "concrete" / "Negative")
    plans = {name: run(["--input", photos, "--model", model, "--output",
                        str(tmp_path / name), "--dry-run", *flags])
             for name, model, flags in (("masked", str(mask_model_dir), ["--write-masks"]),
                                        ("shipped", SHIPPED_MODEL_DIR, []),
                                        ("off", str(mask_model_dir), ["--no-masks"]))}
    capsys.readouterr()
    assert plans["masked"]["masks"]["run"] and plans["masked"]["masks"]["write_masks"]
    assert "tile threshold" in plans["masked"]["masks"]["why"]
    assert "MeasureCracks" in [step["step"] for step in plans["masked"]["parallelism"]]
    assert plans["shipped"]["masks"]["run"] is False
    assert "lists no mask_model" in plans["shipped"]["masks"]["why"]
    assert "MeasureCracks" not in [step["step"] for step in plans["shipped"]["parallelism"]]
    assert plans["off"]["masks"] | {"version": None} == {
        "run": False, "why": "--no-masks", "file": None, "version": None, "threshold": None,
        "write_masks": False}


def edited_card(model_dir: Path, folder: Path, **changes) -> Path:
    copy = folder / "model"
    shutil.copytree(model_dir, copy)
    card = json.loads((copy / "model_card.json").read_text())
    section = {**card["mask_model"], **changes}
    card["mask_model"] = {key: value for key, value in section.items() if value is not None}
    (copy / "model_card.json").write_text(json.dumps(card))
    return copy


@pytest.mark.parametrize("changes, reason", [
    ({"file": "absent.tflite"}, r"absent.tflite: listed as mask_model.file .* but missing"),
    ({"sha256": "0" * 64}, r"mask_model.tflite: content does not match mask_model.sha256"),
    ({"tile_size": 227}, r"mask_model.tile_size 227 is not the classifier's tile_size 224"),
    ({"threshold": None}, r"mask_model lacks \['threshold'\]"),
    ({"threshold": 1.5}, r"mask_model.threshold must be a pixel probability"),
    ({"file": "../model.tflite"}, r"mask_model.file must be a file name"),
])
def test_a_broken_mask_section_names_the_file_and_the_reason(tmp_path: Path,
                                                             mask_model_dir: Path,
                                                             changes: dict, reason: str):
    folder = edited_card(mask_model_dir, tmp_path, **changes)
    with pytest.raises(MaskSpecError, match=reason):
        read_mask_spec(str(folder), 224)


def test_a_mask_model_of_another_shape_is_refused(tmp_path: Path, mask_model_dir: Path):
    """The classifier's own file listed as a mask model: it gives two class probabilities,
    not a mask, and the run stops before it starts."""
    classifier = mask_model_dir / "model.tflite"
    folder = edited_card(mask_model_dir, tmp_path, file="model.tflite",
                         sha256=hashlib.sha256(classifier.read_bytes()).hexdigest())
    with pytest.raises(MaskSpecError, match=r"model.tflite: takes .* a mask model takes"):
        run(["--input", str(tmp_path), "--model", str(folder), "--output",
             str(tmp_path / "out"), "--dry-run"])


def test_a_card_without_a_mask_section_has_no_mask_model():
    assert read_mask_spec(SHIPPED_MODEL_DIR, 224) is None


# --------------------------------------------------------------------------- the parts


def test_tiles_chosen_are_the_flagged_and_their_neighbours():
    plan = plan_tiles(448, 448, 224, 168, 10**9)  # 3 x 3 tiles
    assert tiles_to_mask(plan, [0.1] * 9, 0.5) == ()
    assert tiles_to_mask(plan, [0.9] + [0.1] * 8, 0.5) == (0, 1, 3, 4)
    assert tiles_to_mask(plan, [0.1] * 4 + [0.5] + [0.1] * 4, 0.5) == tuple(range(9))
    assert tiles_to_mask(plan, [0.1] * 8 + [0.7], 0.5) == (4, 5, 7, 8)


def test_stitching_and_measuring_match_the_whole_mask(real_data: Path):
    """The crop measure_mask takes reads what measure reads on the whole mask; stitching a
    resized canvas gives a mask of the image's own size; the preview keeps a hairline."""
    photo = concrete(real_data, "Negative", 1)[0]
    intact = Image.open(photo).convert("RGB")
    drawn = intact.copy()
    ImageDraw.Draw(drawn).line(jagged((10, 110), 13), fill=CRACK_COLOUR, width=3)
    mask = np.any(np.asarray(drawn) != np.asarray(intact), axis=2)
    assert measure_mask(mask) == measure(mask)
    edge = np.zeros((50, 60), dtype=bool)
    edge[:, :4] = True  # a crack along the image's edge: no background beyond it
    assert measure_mask(edge) == measure(edge)
    plan = plan_tiles(227, 227, 224, 168, 10**9)
    tile = np.packbits(np.ones((224, 224), dtype=bool))
    assert stitch(plan, [(0, tile)]).shape == (227, 227) and stitch(plan, [(0, tile)]).all()
    strip = plan_tiles(100, 600, 224, 168, 10**9)  # scaled up to 224 x 1344, 8 tiles
    lower = stitch(strip, [(strip.count - 1, tile)])
    assert lower.shape == (600, 100) and lower[500:].all() and not lower[:499].any()
    hairline = np.zeros((6000, 4800), dtype=bool)
    hairline[3000, :] = True
    with Image.open(io.BytesIO(preview(hairline))) as small:
        assert max(small.size) <= 640 and np.asarray(small).any()


def test_a_photo_changed_since_it_was_scored_is_a_mask_error(tmp_path: Path, real_data: Path):
    photo = tmp_path / "photo.jpg"
    shutil.copy(concrete(real_data, "Negative", 1)[0], photo)
    plan = plan_tiles(227, 227, 224, 168, 10**9)
    image = ScoredImage({"uri": str(photo), "sha256": "0" * 64, "width": 227,
                         "height": 227}, (TileScore(0, (0, 0, 227, 227), 0.9),))
    out = list(CutMaskTilesFn(10**9).process((str(photo), [MaskJob(image, plan, (0,))])))
    assert len(out) == 1 and out[0].tag == "errors"
    assert out[0].value["stage"] == "mask" and "changed since it was scored" in out[0].value[
        "error"]


def test_the_measurements_reach_the_table_and_the_map():
    fields = {field["name"]: field for field in prediction_schema()["fields"]}
    for column in MEASUREMENT_COLUMNS:
        assert fields[column]["type"] == "FLOAT" and fields[column]["mode"] == "NULLABLE"
    assert fields["mask"] == {"name": "mask", "type": "STRING", "mode": "NULLABLE"}
    row = {"uri": "a.jpg", "label": "Positive", "crack_probability": 0.9, "tiles": 9,
           "positive_tiles": 3, "latitude": 47.0, "longitude": 8.0,
           "crack_length_px": 400.5, "crack_width_max_px": 7.75, "crack_width_median_px": 7.5,
           "crack_length_mm": 80.1, "crack_width_max_mm": 1.55, "crack_width_median_mm": 1.5}
    points = list(geo.point_of(row))
    feature = json.loads(geo.geojson(points))["features"][0]["properties"]
    assert {column: feature[column] for column in MEASUREMENT_COLUMNS} == {
        column: row[column] for column in MEASUREMENT_COLUMNS}
    kml = geo.kml(points, "Positive")
    assert '<Data name="crack_width_max_mm"><value>1.55</value></Data>' in kml
    assert "crack width max px 7.75" in kml


def test_masks_are_named_safely_and_uniquely():
    uris = ["/s/a.jpg", "/t/a.jpg", "/s/x.zip!a.jpg", "/s/caf%E9 \n.jpg", "/s/..%2F.jpg"]
    paths = [mask_path(uri) for uri in uris]
    assert len(set(paths)) == len(paths)
    for path in paths:
        folder, name = path.split("/")
        assert folder == "masks" and name.endswith(".png")
        assert all(c.isalnum() or c in "-_." for c in name), name


def test_old_prediction_files_read_with_empty_measurements(tmp_path: Path):
    """A predictions file written before the columns existed reads with them empty."""
    from pipeline.records import PREDICTION_FIELDS, parse_predictions

    old = [field for field in PREDICTION_FIELDS if field not in (*MEASUREMENT_COLUMNS, "mask")]
    row = {field: "" for field in old} | {
        "uri": "a.jpg", "label": "Negative", "crack_probability": "0.1", "threshold": "0.3",
        "width": "10", "height": "10", "tiles": "1", "positive_tiles": "0",
        "model_version": "v", "scored_at": "2026-01-01T00:00:00Z", "sha256": "0" * 64}
    path = tmp_path / "predictions-00000-of-00001.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, old)
        writer.writeheader()
        writer.writerow(row)
    parsed = list(parse_predictions(str(path), path.read_text()))
    assert all(parsed[0][column] is None for column in (*MEASUREMENT_COLUMNS, "mask"))


def test_hostile_names_get_safe_unique_mask_files(tmp_path: Path, mask_model_dir: Path,
                                                  real_data: Path):
    """Photos named with a newline, '%', '!' and bytes that are not UTF-8, and two of one
    name in different folders: each row names its own PNG, under OUT/masks/ only."""
    patch = concrete(real_data, "Negative", 1)[0]
    names = [b"a\nb.jpg", b"caf\xe9.jpg", b"50%!.jpg", b"one/x.jpg", b"two/x.jpg"]
    root = bytes(tmp_path / "photos")
    for name in names:
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(patch.read_bytes())
    out = tmp_path / "out"

    summary = score("--input", tmp_path / "photos", "--model", mask_model_dir, "--output", out,
                    "--write-masks", "--format", "jsonl")

    rows = read_jsonl(out, "predictions")
    assert summary["accounting_ok"] and len(rows) == len(names) == summary["scored"]
    paths = [row["mask"] for row in rows]
    assert len(set(paths)) == len(paths)
    assert sorted(path.name for path in (out / "masks").iterdir()) == sorted(
        path.split("/")[1] for path in paths)
    for path in paths:
        assert not mask_pixels(out, path, (227, 227)).any()


def test_the_report_draws_the_mask_over_the_thumbnail(real_data: Path):
    from pipeline.report import MASK_COLOR, heatmap_thumbnail

    rgb = np.asarray(Image.open(concrete(real_data, "Negative", 1)[0]).convert("RGB"))
    mask = np.zeros(rgb.shape[:2], dtype=bool)
    mask[100:102, 20:200] = True  # a 2 px crack
    drawn = heatmap_thumbnail(rgb, [], 0.5, mask_png=preview(mask))
    plain = heatmap_thumbnail(rgb, [], 0.5)
    with Image.open(io.BytesIO(drawn)) as thumb:
        pixels = np.asarray(thumb.convert("RGB"))
    green = np.all(pixels == MASK_COLOR, axis=2)
    rows = np.flatnonzero(green.any(axis=1))
    assert green.sum() >= 170 and rows.min() >= 99 and rows.max() <= 102
    assert drawn != plain
