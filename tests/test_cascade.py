"""The flip cascade: one pass a tile, the flip average only where one pass is unsure.

Real training runs (a small model on the checked-in concrete patches), a real
re-evaluation of a trained folder, and real pipeline runs on the exported LiteRT file.
"""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from crackscan.cascade import Cascade, combine, other_views
from crackscan.decode import decode_rgb
from crackscan.model_card import ModelCard, ModelCardError, read_card, write_card
from crackscan.tflite_model import TFLiteClassifier
from training import export, reevaluate, train
from training import model as model_lib

from scoring_helpers import read_predictions, score

SMALL_RUN = ["--weights", "none", "--epochs", "1", "--fine-tune-epochs", "0",
             "--image-size", "32", "--batch-size", "8"]


@pytest.fixture(scope="module")
def trained_dir(fixture_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("trained")
    train.main(["--data", str(fixture_dataset), "--output", str(output), *SMALL_RUN,
                "--flip-average", "flips", "--cascade"])
    return output


@pytest.fixture(scope="module")
def flips_dir(trained_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("flips")
    reevaluate.main(["--model-dir", str(trained_dir), "--output", str(output),
                     "--flip-average", "flips"])
    return output


@pytest.fixture(scope="module")
def cascade_dir(flips_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """From the flip-averaged folder: its one-pass model is what a cascade runs."""
    output = tmp_path_factory.mktemp("cascade")
    reevaluate.main(["--model-dir", str(flips_dir), "--output", str(output),
                     "--flip-average", "flips", "--cascade"])
    return output


def test_training_with_cascade_exports_one_pass_and_a_band_holding_both_thresholds(
        trained_dir: Path):
    card = json.loads((trained_dir / "model_card.json").read_text())
    band = card["cascade"]
    assert card["flip_average"] is None and band["views"] == "flips"
    photo_threshold = card["photo_rule"]["photo_threshold"]
    assert band["low"] <= card["threshold"] <= photo_threshold <= band["high"]
    assert set(band["rescored_share"]) == {"val", "test"}
    model = keras.saving.load_model(trained_dir / "model.keras", compile=False)
    assert not any(layer.name == model_lib.FLIP_AVERAGE_LAYER for layer in model.layers)


def test_cascade_figures_are_the_one_pass_outside_the_band_and_the_average_inside(
        fixture_dataset: Path, trained_dir: Path, cascade_dir: Path):
    card = read_card(str(cascade_dir))
    band = Cascade.from_card(card["cascade"], str(cascade_dir))
    model = keras.saving.load_model(trained_dir / "model.keras", compile=False)
    averaged_model = model_lib.with_flip_average(model, "flips")
    evaluated = {row["sha256"]: row["crack_probability"] for row in json.loads(
        (cascade_dir / "test_predictions.json").read_text())}
    images, hashes = export.native_batch(str(fixture_dataset), "test", len(evaluated))
    one_pass = model.predict_on_batch(images)[:, 1]
    averaged = averaged_model.predict_on_batch(images)[:, 1]
    expected = combine(one_pass, averaged, band)
    np.testing.assert_allclose([evaluated[h] for h in hashes], expected, atol=1e-5)
    # The exported file is the one-pass model: the views are the scorer's to run.
    litert = TFLiteClassifier((cascade_dir / card["tflite_file"]).read_bytes(), threads=1)
    np.testing.assert_allclose(litert.predict(images)[:, 1], one_pass, atol=1e-4)


def test_reevaluation_lists_the_training_commands_then_its_own_and_keeps_the_weights(
        trained_dir: Path, flips_dir: Path, cascade_dir: Path):
    trained, averaged, again = (read_card(str(folder))
                                for folder in (trained_dir, flips_dir, cascade_dir))
    assert averaged["flip_average"] == "flips" and again["flip_average"] is None
    # The same weights in the same form: re-evaluated, the band is the trained one.
    assert again["cascade"]["low"] == pytest.approx(trained["cascade"]["low"], abs=1e-6)
    assert again["cascade"]["high"] == pytest.approx(trained["cascade"]["high"], abs=1e-6)
    *made_by, flips_command, own = again["reproduce"]
    assert made_by == trained["reproduce"] and averaged["reproduce"][-1] == flips_command
    assert flips_command.startswith("python -m training.reevaluate --model-dir")
    assert own.endswith("--flip-average flips --cascade")
    weights = [keras.saving.load_model(folder / "model.keras", compile=False).get_weights()
               for folder in (trained_dir, cascade_dir)]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))  # the one-pass weights


def test_cascade_needs_its_views(capsys):
    with pytest.raises(SystemExit):
        train.main(["--data", "d", "--output", "o", "--cascade"])
    assert "--cascade needs --flip-average" in capsys.readouterr().err


@pytest.mark.parametrize("band", ["trained", "everything"])
def test_pipeline_rows_follow_the_cascade(cascade_dir: Path, fixture_concrete_dir: Path,
                                          tmp_path: Path, band: str):
    model_dir = cascade_dir
    if band == "everything":  # every tile re-scored: every row is the full average
        model_dir = tmp_path / "model"
        model_dir.mkdir()
        card = read_card(str(cascade_dir))
        for name in (card["tflite_file"], "model.keras"):
            (model_dir / name).write_bytes((cascade_dir / name).read_bytes())
        write_card(str(model_dir), {**card, "cascade": {**card["cascade"], "low": 0.0,
                                                        "high": 1.0}})
    spec = ModelCard.read(str(model_dir))
    inputs = sorted(fixture_concrete_dir.glob("*/*.jpg"))[:12]
    argv = [arg for path in inputs for arg in ("--input", str(path))]
    summary = score(*argv, "--model", str(model_dir), "--output", str(tmp_path / "out"))
    assert summary["scored"] == len(inputs)
    rows = read_predictions(tmp_path / "out")
    litert = TFLiteClassifier((model_dir / "model.tflite").read_bytes(), threads=1)
    rescored = 0
    for path in inputs:
        tile = decode_rgb(path.read_bytes())
        assert tile.shape[:2] == (spec.tile_size, spec.tile_size)
        one_pass = float(litert.predict(tile[None])[0, 1])
        views = litert.predict(other_views(tile, "flips"))[:, 1]
        unsure = spec.cascade.unsure(np.array([one_pass]))[0]
        rescored += unsure
        expected = (one_pass + views.sum()) / 4 if unsure else one_pass
        assert float(rows[str(path)]["crack_probability"]) == pytest.approx(expected,
                                                                            abs=1e-4)
    if band == "everything":
        assert rescored == len(inputs)


def test_a_card_whose_band_cannot_run_is_refused(cascade_dir: Path):
    card = read_card(str(cascade_dir))
    for bad in ({**card["cascade"], "low": 0.9, "high": 0.1},
                {**card["cascade"], "views": "quarter turns"}, "flips"):
        with pytest.raises(ModelCardError, match=r"cascade must be"):
            ModelCard.from_card(str(cascade_dir), {**card, "cascade": bad})
