"""The jointed-intact evaluation set: cut from a data set's test split only, each kind from
the photos it names, and scored as whole photos with the model's own rule."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crackscan.tiles import default_stride, plan_tiles
from training import build_dataset, export_tflite, jointed_set, windows


@pytest.fixture(scope="module")
def jointed_data(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real fixture photos under the names of the sources each kind is cut from: the
    pavement crops stand in for masonry-dais (cracked photos without an intact window),
    the deck tiles for uav75, with the lab patches; nearly all of it in the test split."""
    root = tmp_path_factory.mktemp("jointed")
    field = real_data / "data" / "field"
    shutil.copytree(field / "shadowcrack", root / "masonry-dais")
    shutil.copytree(field / "uavcrack", root / "uav75")
    shutil.copytree(real_data / "data" / "concrete", root / "concrete")
    build_dataset.build([str(root / name) for name in ("masonry-dais", "uav75", "concrete")],
                        str(root / "data"), shards=1, val_fraction=0.0, test_fraction=0.9)
    return root


def test_each_kind_is_cut_from_the_test_split_of_its_own_source(jointed_data: Path,
                                                                tmp_path: Path):
    manifest = jointed_set.build(str(jointed_data / "data"), None, str(tmp_path / "set"))
    windows_by_source: dict[str, list[dict]] = {}
    for window in jointed_set.test_windows(str(jointed_data / "data")):
        windows_by_source.setdefault(window["source"], []).append(window)
    kinds = manifest["kinds"]
    assert set(kinds) == {"formwork", "brick", "drawn joints"}  # no survey given
    uav = windows_by_source["uav75"]
    assert kinds["formwork"] == {"Negative": sum(w["label"] == 0 for w in uav),
                                 "Positive": sum(w["label"] == 1 for w in uav)}
    # Brick: every cracked test window, and each test photo's clear crop where one fits.
    brick = windows_by_source["masonry-dais"]
    crops = []
    for photo in sorted({w["photo"] for w in brick}):
        image = np.asarray(Image.open(photo).convert("RGB"))
        mask = np.asarray(Image.open(photo.replace("/images/", "/masks/")
                                     .replace(".jpg", ".png")))
        plan = plan_tiles(image.shape[1], image.shape[0], 224, default_stride(224), 10**8)
        crop = windows.clear_crop(plan, image, mask, 0)
        if crop is not None:
            crops.append(crop.pixels)
    assert crops and kinds["brick"] == {"Negative": len(crops),
                                        "Positive": sum(w["label"] == 1 for w in brick)}
    written = [np.asarray(Image.open(p)) for p in
               sorted((tmp_path / "set" / "brick" / "Negative").glob("*.png"))]
    assert all(any(np.array_equal(w, c) for c in crops) for w in written)
    # Drawn joints: the other sources' windows, darkened along straight joints.
    lab = windows_by_source["concrete"]
    drawn = sorted((tmp_path / "set" / "drawn joints").rglob("*.png"))
    assert len(drawn) == min(sum(w["label"] == 0 for w in lab), jointed_set.DRAWN_PER_CLASS) \
        + min(sum(w["label"] == 1 for w in lab), jointed_set.DRAWN_PER_CLASS)
    first_intact = next(w["pixels"] for w in lab if w["label"] == 0)
    jointed = np.asarray(Image.open(tmp_path / "set" / "drawn joints" / "Negative"
                                    / "concrete-000.png"), np.float32)
    assert jointed.shape == first_intact.shape
    assert (jointed <= np.round(first_intact) + 1).mean() > 0.75  # darker, but lit edges
    assert not np.allclose(jointed, np.round(first_intact), atol=1)
    assert json.loads((tmp_path / "set" / "manifest.json").read_text()) == manifest


def test_the_set_is_scored_as_photos_kind_by_kind(jointed_data: Path, tiny_model_dir: Path,
                                                  tmp_path: Path):
    manifest = jointed_set.build(str(jointed_data / "data"), None, str(tmp_path / "set"))
    with pytest.raises(SystemExit):  # a Keras-only folder: one line asking for LiteRT
        jointed_set.main(["evaluate", "--model", str(tiny_model_dir), "--set",
                          str(tmp_path / "set")])
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    export_tflite.add_to_model_dir(str(model), jointed_data / "concrete")
    figures = jointed_set.main(["evaluate", "--model", str(model), "--set",
                                str(tmp_path / "set"), "--json", str(tmp_path / "f.json")])
    assert json.loads((tmp_path / "f.json").read_text()) == figures
    for kind, counts in manifest["kinds"].items():
        assert figures[kind]["intact"] == counts["Negative"]
        assert figures[kind]["cracked"] == counts["Positive"]
        assert 0 <= figures[kind]["flagged"] <= counts["Negative"]
        assert 0 <= figures[kind]["found"] <= counts["Positive"]
    assert "| brick |" in jointed_set.table(figures)


def test_unseen_walls_come_from_the_survey_and_an_unreadable_photo_is_named(
        jointed_data: Path, tmp_path: Path):
    lab = jointed_data / "concrete"
    survey = tmp_path / "survey"
    for folder, label in (("no_crack", "Negative"), ("crack", "Positive")):
        (survey / folder).mkdir(parents=True)
        for photo in sorted((lab / label).glob("*.jpg"))[:2]:
            shutil.copy(photo, survey / folder / photo.name)
    cut = survey / "crack" / "truncated.jpg"
    cut.write_bytes(next((lab / "Positive").glob("*.jpg")).read_bytes()[:3000])
    manifest = jointed_set.build(str(jointed_data / "data"), str(survey), str(tmp_path / "set"))
    assert manifest["kinds"]["unseen walls"] == {"Negative": 2, "Positive": 2}
    assert [s["uri"] for s in manifest["skipped"]] == [str(cut)]
    assert "truncated" in manifest["skipped"][0]["error"]
