"""The photo rule's own threshold: a photo is held against it, its tiles against the tile
threshold, and the rows say which threshold decided the label."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crackscan.model_card import ModelCard, ModelCardError
from scoring_helpers import concrete, copy_files, read_predictions, score


def with_photo_rule(model_dir: Path, folder: Path, threshold: float, **rule) -> Path:
    shutil.copytree(model_dir, folder)
    card = json.loads((folder / "model_card.json").read_text())
    card["threshold"] = threshold
    card["photo_rule"] = {"tiles_needed": 1, **rule}
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder


def test_photos_are_labelled_at_the_photo_threshold_and_tiles_counted_at_the_tile_one(
        tiny_model_dir: Path, real_data: Path, tmp_path: Path):
    photos = copy_files(concrete(real_data, "Positive", 3) + concrete(real_data, "Negative", 3),
                        tmp_path / "in")
    plain = with_photo_rule(tiny_model_dir, tmp_path / "plain", 0.0)
    score("--input", tmp_path / "in", "--output", tmp_path / "out-plain", "--model", plain)
    probabilities = sorted(float(r["crack_probability"])
                           for r in read_predictions(tmp_path / "out-plain").values())
    cut = (probabilities[2] + probabilities[3]) / 2  # three photos on either side
    ruled = with_photo_rule(tiny_model_dir, tmp_path / "ruled", 0.0, photo_threshold=cut)
    summary = score("--input", tmp_path / "in", "--output", tmp_path / "out", "--model", ruled)
    rows = read_predictions(tmp_path / "out")
    assert len(rows) == len(photos) and summary["photo_threshold"] == cut
    assert summary["threshold"] == 0.0
    for row in rows.values():
        assert float(row["threshold"]) == pytest.approx(cut, abs=1e-6)
        assert row["label"] == ("Positive" if float(row["crack_probability"]) >= cut
                                else "Negative")
        assert row["positive_tiles"] == row["tiles"]  # every tile reaches the tile threshold
    assert sorted(row["label"] for row in rows.values()) == ["Negative"] * 3 + ["Positive"] * 3


@pytest.mark.parametrize("photo_threshold", [0.2, 1.5, "0.7", True])
def test_a_photo_threshold_below_the_tile_threshold_or_not_a_probability_is_refused(
        tiny_model_dir: Path, tmp_path: Path, photo_threshold):
    folder = with_photo_rule(tiny_model_dir, tmp_path / "bad", 0.5,
                             photo_threshold=photo_threshold)
    with pytest.raises(ModelCardError, match="photo_threshold must be a number from the "
                                             "threshold 0.5 to 1"):
        ModelCard.read(str(folder))


def test_a_card_without_a_photo_threshold_holds_photos_to_the_tile_threshold(
        tiny_model_dir: Path):
    spec = ModelCard.read(str(tiny_model_dir))
    assert spec.photo_threshold is None and spec.photo_cutoff == spec.threshold
    assert spec.label(spec.threshold) == spec.positive_class
