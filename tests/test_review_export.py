"""``--export-review``: the tiles a person should label, and their way back into training.

Real runs throughout: the shipped field model scores the bundled sample survey (real
photos, some inside a zip, one under an awkward name), the exported PNGs are checked
against the photos' own pixels, sorted into class folders by the survey's truth as a person
would, built into a data set and trained on.
"""
from __future__ import annotations

import csv
import io
import logging
import re
import shutil
import zipfile
from collections import defaultdict
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from crackscan.decode import decode_rgb
from crackscan.tiles import fits_one_tile
from crackscan.model_card import ModelCard
from pipeline.inference import SHIPPED_MODEL_DIR
from pipeline.records import ScoredImage, TileScore
from pipeline.review_export import (GROUP_FIELDS, REVIEW_FIELDS, ExportReview,
                                    review_tiles, tile_file_name)
from pipeline.score import SetupError, run
from scoring_helpers import read_jsonl, read_predictions, score
from training import build_dataset, train

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "pipeline" / "sample_survey" / "photos"
TRUTH = REPO / "pipeline" / "sample_survey" / "truth.csv"
# Below the 4 tiles of most sample photos, so the cap decides which tiles go.
PER_PHOTO = 3
IN_ZIP = ("deck_0011.jpg", "deck_0016.jpg", "wall_00092_cracked.jpg", "wall_00426_intact.jpg",
          "pavement_test_10-3.jpg")
# Also in the zip, and loose too: two uris whose file names share a stem.
IN_ZIP_AND_LOOSE = "wall_00009_cracked.jpg"
# A copy of a loose photo under a name with a space, a '#', a '!' (escaped in its uri) and
# a non-ASCII letter; its tiles must get names of their own.
AWKWARD = ("wall 00009 #2 (copie) é!.jpg", "wall_00009_cracked.jpg")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]+_t\d+_[0-9a-f]{16}\.png$")


def truths() -> dict[str, str]:
    with TRUTH.open(newline="") as handle:
        truth = {row["photo"]: row["truth"] for row in csv.DictReader(handle)}
    truth[AWKWARD[0]] = truth[AWKWARD[1]]
    return truth


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def photo_bytes(survey: Path, uri: str) -> bytes:
    """The bytes behind a uri, read here without the pipeline's reader."""
    if "!" in uri:
        archive, member = uri.split("!")
        with zipfile.ZipFile(archive) as zipped:
            return zipped.read(member)
    return (survey / Path(uri).name.replace("%21", "!")).read_bytes()


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample survey as it arrives: five photos in a zip under a folder, the rest loose,
    one of them in the zip as well, one loose copy under an awkward name, and a file that is
    no image."""
    folder = tmp_path_factory.mktemp("survey")
    with zipfile.ZipFile(folder / "flight.zip", "w") as zipped:
        for name in IN_ZIP:
            zipped.write(PHOTOS / name, f"pass 1/{name}")
        zipped.write(PHOTOS / IN_ZIP_AND_LOOSE, f"pass 2/{IN_ZIP_AND_LOOSE}")
    for path in PHOTOS.iterdir():
        if path.name not in IN_ZIP:
            shutil.copy(path, folder / path.name)
    shutil.copy(PHOTOS / AWKWARD[1], folder / AWKWARD[0])
    (folder / "notes.jpg").write_text("not a photo")
    return folder


@pytest.fixture(scope="module")
def exported(survey: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    runs = tmp_path_factory.mktemp("runs")
    out, review = runs / "out", runs / "review"
    summary = score("--input", survey, "--model", SHIPPED_MODEL_DIR, "--output", out,
                    "--write-tiles", "--export-review", review,
                    "--review-per-photo", PER_PHOTO)
    return {"summary": summary, "out": out, "review": review,
            "rows": read_csv(review / "review.csv"),
            "predictions": read_predictions(out),
            "tiles": read_jsonl(out, "tiles")}


def test_review_csv_and_the_files_match_one_to_one(exported):
    review, rows = exported["review"], exported["rows"]
    assert exported["summary"]["accounting_ok"] and exported["summary"]["failed"] == 1
    with (review / "review.csv").open(newline="") as handle:
        assert tuple(next(csv.reader(handle))) == REVIEW_FIELDS
    names = [row["file"] for row in rows]
    assert len(set(names)) == len(names)
    assert sorted(names) == sorted(path.name for path in (review / "unsorted").iterdir())
    assert all(SAFE_NAME.match(name) for name in names), names
    # one photo loose, in the zip under the same name, and under an awkward name
    copies = {row["uri"] for row in rows if row["file"].startswith("wall_00009_cracked_t0_")}
    assert len(copies) == 2 and any("flight.zip!" in uri for uri in copies)
    assert any(row["uri"].endswith("wall 00009 #2 (copie) é%21.jpg") for row in rows)
    groups = read_csv(review / "manifest.csv")
    assert tuple(groups[0]) == GROUP_FIELDS
    sha = {row["file"]: exported["predictions"][row["uri"]]["sha256"] for row in rows}
    assert {group["name"] + ".png": group["group"] for group in groups} == sha


def test_the_chosen_tiles_are_the_flagged_ones_then_the_nearest_to_the_threshold(exported):
    threshold = ModelCard.read(SHIPPED_MODEL_DIR).photo_cutoff
    tiles: dict[str, dict[int, float]] = defaultdict(dict)
    for tile in exported["tiles"]:
        tiles[tile["uri"]][tile["tile"]] = tile["crack_probability"]
    chosen: dict[str, set[int]] = defaultdict(set)
    for row in exported["rows"]:
        chosen[row["uri"]].add(int(row["tile"]))
    assert set(chosen) == set(exported["predictions"]) == set(tiles)
    flagged_photos = capped = 0
    for uri, scores in tiles.items():
        picked = chosen[uri]
        assert len(picked) == min(PER_PHOTO, len(scores)), uri
        if exported["predictions"][uri]["label"] == "Positive":
            flagged_photos += 1
            flagged = {t for t, p in scores.items() if p >= threshold}
            # every flagged tile, or (over the cap) the highest of them
            if len(flagged) <= PER_PHOTO:
                assert flagged <= picked, uri
            else:
                capped += 1
                assert picked <= flagged, uri
                assert min(scores[t] for t in picked) >= max(
                    scores[t] for t in flagged - picked), uri
            rest = set(scores) - flagged
            picked_rest = picked & rest
        else:
            rest, picked_rest = set(scores), picked
        # the others are the nearest to the threshold
        if picked_rest and rest - picked_rest:
            assert max(abs(scores[t] - threshold) for t in picked_rest) <= min(
                abs(scores[t] - threshold) for t in rest - picked_rest), uri
    assert flagged_photos and capped and len(tiles) > flagged_photos


def test_each_file_holds_the_photos_pixels_in_the_scored_box(exported, survey):
    boxes = {(t["uri"], t["tile"]): (t["box"], t["crack_probability"])
             for t in exported["tiles"]}
    threshold = ModelCard.read(SHIPPED_MODEL_DIR).photo_cutoff
    for row in exported["rows"]:
        uri, tile = row["uri"], int(row["tile"])
        box, probability = boxes[(uri, tile)]
        assert [int(row[k]) for k in ("x0", "y0", "x1", "y1")] == box
        assert float(row["crack_probability"]) == probability
        assert float(row["threshold"]) == threshold
        prediction = exported["predictions"][uri]
        assert row["label"] == prediction["label"]
        assert (row["latitude"], row["longitude"]) == (prediction.get("latitude") or "",
                                                       prediction.get("longitude") or "")
        rgb = decode_rgb(photo_bytes(survey, uri))
        x0, y0, x1, y1 = box
        with Image.open(exported["review"] / "unsorted" / row["file"]) as image:
            assert image.format == "PNG"
            pixels = np.asarray(image)
        np.testing.assert_array_equal(pixels, rgb[y0:y1, x0:x1], err_msg=row["file"])
        height, width = rgb.shape[:2]
        if min(width, height) >= 224 and not fits_one_tile(width, height, 224):
            assert pixels.shape == (224, 224, 3)  # not resized: exactly the tile scored


def test_sorted_by_hand_the_folder_builds_a_data_set_and_trains(exported, tmp_path):
    """A person sorts the tiles by the survey's truth; build_dataset takes the folder, keeps
    each photo's tiles in one split, and a tiny model trains on it."""
    review = tmp_path / "review"
    shutil.copytree(exported["review"], review)
    truth = truths()
    for row in exported["rows"]:
        label = truth[Path(row["uri"].replace("%21", "!")).name]
        (review / label).mkdir(exist_ok=True)
        (review / "unsorted" / row["file"]).rename(review / label / row["file"])
    assert not list((review / "unsorted").iterdir())

    manifest = build_dataset.build(str(review), str(tmp_path / "data"), shards=1)
    # manifest.csv groups the tiles by photo and is read as such; review.csv is no image.
    assert {error["uri"] for error in manifest["errors"]} == {str(review / "review.csv")}
    # byte-identical tiles (the awkward copy's) are kept once
    distinct = len(exported["rows"]) - len(manifest["duplicates"])
    assert manifest["duplicates"] and sum(
        manifest["counts"][split]["total"] for split in ("train", "val", "test")) == distinct
    photo_of = {row["file"]: row["uri"] for row in exported["rows"]}
    splits_of_photo: dict[str, set[str]] = defaultdict(set)
    for split in ("train", "val", "test"):
        for path in (tmp_path / "data").glob(f"{split}-*.tfrecord"):
            for record in tf.data.TFRecordDataset(str(path)):
                uri = build_dataset.tfrecords.parse(record)["image/uri"].numpy().decode()
                splits_of_photo[photo_of[Path(uri).name]].add(split)
    assert all(len(splits) == 1 for splits in splits_of_photo.values()), splits_of_photo
    assert len({split for splits in splits_of_photo.values() for split in splits}) == 3

    report = train.main(["--data", str(tmp_path / "data"), "--output", str(tmp_path / "model"),
                         "--weights", "none", "--epochs", "1", "--fine-tune-epochs", "0",
                         "--image-size", "32", "--batch-size", "8"])
    assert report["stages"]["stage1"]["epochs_run"] == 1
    assert (tmp_path / "model" / "model_card.json").exists()


def test_file_names_are_unique_and_safe_for_any_uri():
    uris = ["gs://b/a.zip!dir/x.jpg", "gs://b/c.zip!dir/x.jpg", "gs://b/a.zip!dir/x.jpg!2",
            "surveys/x.jpg", "caf%E9.jpg", "a%0Ab.jpg", "pack.zip%21m.jpg", "../../etc/x.jpg",
            "s/.hidden", "s/$(rm -rf ~) 'q' \"d\".jpg", "s/ünï cødé.tif", "s/" + "n" * 300]
    names = [tile_file_name(uri, tile) for uri in uris for tile in (0, 1, 980)]
    assert len(set(names)) == len(names)
    assert all(SAFE_NAME.match(name) and len(name) < 80 for name in names), names
    assert tile_file_name("gs://b/a.zip!dir/x.jpg", 3).startswith("x_t3_")


def test_the_cap_and_the_order_of_choice_on_one_photo():
    tiles = tuple(TileScore(i, (0, 0, 1, 1), p)
                  for i, p in enumerate([0.9, 0.2, 0.55, 0.45, 0.7, 0.05, 0.99]))
    row = {"uri": "x.jpg", "threshold": 0.5}
    flagged = ScoredImage({**row, "label": "Positive"}, tiles)
    assert [t.tile for t in review_tiles(flagged, "Positive", 4)] == [6, 0, 4, 2]
    assert [t.tile for t in review_tiles(flagged, "Positive", 6)] == [6, 0, 4, 2, 3, 1]
    intact = ScoredImage({**row, "label": "Negative"}, tiles)
    assert [t.tile for t in review_tiles(intact, "Positive", 3)] == [3, 2, 4]


def test_a_photo_that_cannot_be_read_again_is_counted_and_the_rest_exported(
        survey, tmp_path, caplog):
    def image(uri: str) -> ScoredImage:
        return ScoredImage({"uri": uri, "label": "Positive", "threshold": 0.5,
                            "sha256": "0" * 64},
                           (TileScore(0, (0, 0, 100, 100), 0.9),))

    zip_uri = f"{survey}/flight.zip!pass 1/deck_0011.jpg"
    broken = [f"{survey}/gone.jpg", f"{survey}/notes.jpg", f"{survey}/flight.zip!pass 1/gone.jpg"]
    pipeline = beam.Pipeline()
    _ = (pipeline
         | beam.Create([image(uri) for uri in [zip_uri, f"{survey}/deck_0020.jpg", *broken]])
         | ExportReview(str(tmp_path), "Positive", 8, 10**8))
    with caplog.at_level(logging.WARNING):
        result = pipeline.run()
        result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace("crackscan"))["counters"]}
    assert counters == {"review_tiles_written": 2, "review_photos_failed": 3}
    assert len(read_csv(tmp_path / "review.csv")) == 2
    assert len(list((tmp_path / "unsorted").iterdir())) == 2
    for uri in broken:
        assert any(uri in record.getMessage() for record in caplog.records), uri


def test_an_earlier_export_is_not_mixed_with(exported, survey, tmp_path):
    with pytest.raises(SetupError, match="already holds an export"):
        run(["--input", str(survey), "--output", str(tmp_path / "out"),
             "--export-review", str(exported["review"])])
