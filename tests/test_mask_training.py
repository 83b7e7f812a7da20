"""The crack-mask model's training side: its measure, its data, a tiny real training, the
LiteRT export, the card section and attaching it to a classifier (issue 38).

The training runs on the real field photos and masks checked in under tests/fixtures (8
uavcrack and 4 shadowcrack photos) with a random encoder: what is checked is what the run
writes and that the files agree, not how well 30 windows teach. How well the real model does
is in its card (docs/crack_width.md).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from crackscan import mask_spec, model_card
from crackscan.decode import decode_rgb
from crackscan.labels import NEGATIVE, POSITIVE
from training import build_dataset, export_tflite, mask_data, mask_eval, mask_export, train_masks
from training.input_pipeline import DataError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "pipeline" / "default_model"
SOURCES = ("uavcrack", "shadowcrack")


def line(rows: tuple[int, int], shape=(100, 100)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows[0]:rows[1], 10:90] = True
    return mask


@pytest.mark.parametrize("shift, f1", [(0, 1.0), (1, 1.0), (2, 1.0), (3, 0.5), (4, 0.0)])
def test_tolerance_f1_of_a_shifted_crack(shift: int, f1: float) -> None:
    """A 2 px crack predicted ``shift`` px off: within 2 px every pixel counts; at 3 px the
    near row of each counts (0.5 by hand); at 4 px none does."""
    truth = line((50, 52))
    scores = mask_eval.tolerance_scores(np.roll(truth, shift, axis=0), truth)
    assert scores["f1"] == pytest.approx(f1)
    assert scores["precision"] == pytest.approx(f1) and scores["recall"] == pytest.approx(f1)


def test_tolerance_is_euclidean() -> None:
    """A pixel diagonally (2, 1) off lies sqrt(5) > 2 px away: not within the tolerance."""
    truth = np.zeros((20, 20), bool)
    truth[10, 10] = True
    near, far = np.zeros_like(truth), np.zeros_like(truth)
    near[12, 10] = True
    far[12, 11] = True
    assert mask_eval.tolerance_scores(near, truth)["f1"] == 1.0
    assert mask_eval.tolerance_scores(far, truth)["f1"] == 0.0


def test_counts_at_every_threshold_match_thresholding_each() -> None:
    """Recall from one maximum filter equals recall of each thresholded mask measured by
    distance transforms, at every threshold."""
    rng = np.random.default_rng(3)
    truth = line((40, 43), (90, 90)) | line((60, 61), (90, 90)).T
    probability = np.clip(truth * 0.6 + rng.random(truth.shape) * 0.5 - 0.1, 0, 1)
    probability = np.roll(probability, 1, axis=1).astype(np.float32)
    counts = mask_eval.photo_counts(probability, truth)
    for index, threshold in enumerate(mask_eval.THRESHOLDS):
        expected = mask_eval.tolerance_scores(probability >= threshold, truth)
        assert counts.scores(index) == pytest.approx(expected)


def test_nothing_predicted_on_an_intact_photo_is_no_false_alarm() -> None:
    empty = np.zeros((50, 50), bool)
    assert mask_eval.tolerance_scores(empty, empty) == {"precision": 1.0, "recall": 1.0,
                                                        "f1": 1.0}
    assert mask_eval.tolerance_scores(line((5, 7), (50, 50)), empty)["precision"] == 0.0


def test_width_error_reads_widths_as_the_measurement_does() -> None:
    """An 8 px crack predicted 6 px wide reads 2 px narrow on every centre-line pixel found;
    predicted exactly, 0."""
    truth = line((46, 54))
    assert np.median(mask_eval.width_errors(line((47, 53)), truth)) == pytest.approx(-2.0)
    exact = mask_eval.width_errors(truth, truth)
    assert exact.size > 60 and np.all(exact == 0)


def test_threshold_is_the_best_mean_f1_over_sources() -> None:
    truth = line((50, 52))
    faint = truth * 0.3 + 0.02
    clean = np.where(truth, 0.9, 0.0) + np.roll(truth, 30, axis=0) * 0.5
    by_source = mask_eval.counts_by_source([
        mask_eval.ScoredPhoto("a", "a.png", faint.astype(np.float32), truth),
        mask_eval.ScoredPhoto("b", "b.png", clean.astype(np.float32), truth)])
    # a needs <= 0.30, b needs > 0.50 to drop its false crack: 0.55 keeps a at 0.
    assert mask_eval.choose_threshold(by_source) == pytest.approx(0.3)


@pytest.fixture(scope="module")
def mask_dataset(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data set of the checked-in field photos, built as the field data set is."""
    output = tmp_path_factory.mktemp("mask-data")
    build_dataset.build([str(real_data / "data" / "field" / s) for s in SOURCES], str(output),
                        shards=1, val_fraction=0.25, test_fraction=0.25)
    return output


def test_windows_come_back_with_their_masks(mask_dataset: Path) -> None:
    """Every window the data set holds is found again in its photo, with a mask that agrees
    with its label: a crack in the central half of each Positive, none in a Negative."""
    photos = mask_data.dataset_photos(str(mask_dataset))
    assert {p.source for p in photos} == set(SOURCES)
    assert {p.split for p in photos} == {"train", "val", "test"}
    labels = set()
    for photo in photos:
        windows = mask_data.photo_windows(mask_data.read_photo(photo, 224, 168))
        assert [w.box for w in windows] == [w.box for w in photo.windows]
        for window in windows:
            labels.add(window.label)
            if window.label == POSITIVE:
                assert window.crack[56:168, 56:168].any()
            if window.label == NEGATIVE:
                assert not window.crack.any()
    assert {POSITIVE, NEGATIVE} <= labels


def test_a_mask_changed_after_the_build_is_named(mask_dataset: Path, real_data: Path,
                                                  tmp_path: Path) -> None:
    source = tmp_path / "uavcrack"
    shutil.copytree(real_data / "data" / "field" / "uavcrack", source)
    data = tmp_path / "data"
    build_dataset.build(str(source), str(data), shards=1)
    photo = next(p for p in mask_data.dataset_photos(str(data))
                 if any(w.label == POSITIVE for w in p.windows))
    mask_file = Path(mask_data.mask_path(photo.uri))
    from PIL import Image
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(mask_file)
    with pytest.raises(DataError, match=photo.uri):
        mask_data.photo_windows(mask_data.read_photo(photo, 224, 168))


def test_stitching_gives_the_photo_back(real_data: Path) -> None:
    """Tiles scored by a function of their own pixels, stitched: exactly the photo's own
    values where its tiles overlap (256 px, 4 tiles), and close to them where its canvas is
    scaled up to a tile and back (160 px: resampling twice blurs the texture a little)."""
    for name, tolerance in (("uavcrack/images/ckp731k5y000239687icy8dtd_00.jpg", 1e-6),
                            ("shadowcrack/images/test_1-1.jpg", 0.05)):
        path = real_data / "data" / "field" / name
        rgb = decode_rgb(path.read_bytes())
        pixels = mask_data.read_photo(mask_data.MaskPhoto(str(path), "x", "test", ()), 224, 168)
        stitched = mask_eval.photo_probability(lambda t: t[..., :1] / 255.0, pixels)
        assert stitched.shape == rgb.shape[:2]
        assert np.abs(stitched - rgb[..., 0] / 255.0).mean() < tolerance


@pytest.fixture(scope="module")
def trained(mask_dataset: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, Path, dict]:
    """A tiny mask model trained on the fixtures, attached to a copy of the shipped model."""
    root = tmp_path_factory.mktemp("mask-run")
    classifier = root / "classifier"
    classifier.mkdir()
    for name in (model_card.CARD_FILE, model_card.TFLITE_FILE):
        shutil.copy(DEFAULT_MODEL / name, classifier / name)
    output = root / "masks"
    report = train_masks.main([
        "--data", str(mask_dataset), "--output", str(output), "--weights", "none",
        "--cracked", "12", "--intact", "4", "--val-cracked", "2", "--val-intact", "2",
        "--epochs", "1", "--batch-size", "8", "--eval-photos", "2",
        "--attach-to", str(classifier)])
    return output, classifier, report


def test_training_writes_the_contract(trained: tuple[Path, Path, dict]) -> None:
    output, _, report = trained
    section = json.loads((output / mask_export.MASK_CARD_FILE).read_text())["mask_model"]
    for key in ("file", "sha256", "tile_size", "threshold", "tolerance_px", "training_sources",
                "metrics_by_source", "val_metrics_by_source", "reproduce", "backbone"):
        assert key in section, key
    assert section["file"] == "mask_model.tflite" and section["tile_size"] == 224
    assert section["sha256"] == model_card.file_sha256(str(output / "mask_model.tflite"))
    assert section["tolerance_px"] == 2 and 0 < section["threshold"] < 1
    assert {s["name"] for s in section["training_sources"]} == set(SOURCES)
    for figures in section["metrics_by_source"].values():
        assert {"precision", "recall", "f1", "width_error_px", "photos"} <= set(figures)
        assert 0 <= figures["f1"] <= 1 and figures["photos"] >= 1
    assert section["reproduce"][-1].startswith("python -m training.train_masks --data ")
    assert report["threshold"] == section["threshold"]
    for plot in ("mask_by_source.png", "mask_examples.png"):
        assert (output / "plots" / plot).stat().st_size > 1000


def test_litert_file_matches_keras_on_real_tiles(trained: tuple[Path, Path, dict],
                                                 real_data: Path) -> None:
    """float32 [-1, 224, 224, 3] 0-255 in, [-1, 224, 224, 1] probabilities out, as Keras."""
    output, _, _ = trained
    content = (output / "mask_model.tflite").read_bytes()
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=content)
    [given] = interpreter.get_input_details()
    [taken] = interpreter.get_output_details()
    assert list(given["shape_signature"]) == [-1, 224, 224, 3] and given["dtype"] == np.float32
    assert list(taken["shape_signature"]) == [-1, 224, 224, 1]
    tiles = np.stack([decode_rgb(p.read_bytes())[:224, :224] for p in
                      sorted((real_data / "data" / "field" / "uavcrack" / "images").iterdir())[:3]]
                     ).astype(np.float32)
    model = keras.saving.load_model(output / "mask_model.keras", compile=False)
    expected = np.asarray(model.predict_on_batch(tiles))
    got = export_tflite.predict(content, tiles)
    assert got.shape == (3, 224, 224, 1)
    assert np.max(np.abs(got - expected)) < mask_export.MAX_ABS_DIFF
    assert 0 <= got.min() and got.max() <= 1


def test_attached_to_a_classifier(trained: tuple[Path, Path, dict]) -> None:
    output, classifier, _ = trained
    card = model_card.read_card(str(classifier))
    section = json.loads((output / mask_export.MASK_CARD_FILE).read_text())["mask_model"]
    assert card["mask_model"] == section
    assert model_card.file_sha256(str(classifier / "mask_model.tflite")) == section["sha256"]
    assert card["tflite_sha256"] == model_card.file_sha256(str(classifier / "model.tflite"))
    spec = mask_spec.read_mask_spec(str(classifier), card["tile_size"])
    assert (spec.sha256, spec.threshold) == (section["sha256"], section["threshold"])


def test_attach_refuses_what_does_not_fit(trained: tuple[Path, Path, dict],
                                          tmp_path: Path) -> None:
    """Another tile size, or a file that is not the one the section describes, stops the
    attach with the file and the reason; the classifier's card is left as it was."""
    output, classifier, _ = trained
    other = tmp_path / "classifier"
    shutil.copytree(classifier, other)
    card = json.loads((other / model_card.CARD_FILE).read_text())
    del card["mask_model"]
    (other / model_card.CARD_FILE).write_text(json.dumps(card | {"tile_size": 96}))
    (other / "mask_model.tflite").unlink()
    with pytest.raises(mask_export.MaskExportError, match="96 px"):
        mask_export.attach(str(output), str(other))
    assert "mask_model" not in json.loads((other / model_card.CARD_FILE).read_text())
    tampered = tmp_path / "masks"
    shutil.copytree(output, tampered)
    with open(tampered / "mask_model.tflite", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(mask_export.MaskExportError, match="does not match the sha256"):
        mask_export.attach(str(tampered), str(classifier))


def test_attach_command_line(trained: tuple[Path, Path, dict], tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    output, classifier, _ = trained
    target = tmp_path / "classifier"
    target.mkdir()
    for name in (model_card.CARD_FILE, model_card.TFLITE_FILE):
        shutil.copy(DEFAULT_MODEL / name, target / name)
    mask_export.main(["--mask-dir", str(output), "--model-dir", str(target)])
    assert "attached" in capsys.readouterr().out
    assert (target / "mask_model.tflite").read_bytes() == (output / "mask_model.tflite"
                                                           ).read_bytes()
    with pytest.raises(SystemExit, match=f"{tmp_path}: not a mask model folder, "
                                         f"mask_card.json is missing"):
        mask_export.main(["--mask-dir", str(tmp_path), "--model-dir", str(target)])


def test_the_model_card_shows_the_attached_section(trained: tuple[Path, Path, dict]) -> None:
    """MODEL_CARD.md's masks table is written from the card's section, one row a source."""
    from crackscan import model_card_doc

    _, classifier, _ = trained
    card = model_card.read_card(str(classifier))
    text = model_card_doc.render("<!-- card:masks -->\n<!-- /card:masks -->", card)
    section = card["mask_model"]
    assert f"sha256 `{section['sha256'][:12]}`" in text
    for source, figures in section["metrics_by_source"].items():
        assert f"| {source} | {figures['photos']} | {figures['precision']:.3f} |" in text
    assert section["reproduce"][-1] in text
    bare = model_card_doc.render("<!-- card:masks -->\n<!-- /card:masks -->",
                                 {k: v for k, v in card.items() if k != "mask_model"})
    assert "No crack-mask model is attached" in bare
