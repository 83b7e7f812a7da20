"""Model folders: only crackscan's own export is scored, and a wrong folder stops the run
before it starts.

Each folder below is a copy of a real exported model with one thing wrong: the card's
JSON, a field's type, a file name that leaves the folder, or a model file in another
format or with code in it. Where a file is replaced, the card's hash is updated to match,
so the change under test is what gets it refused and not the hash. Each must be refused on
the launcher with a ModelCardError that says what is wrong, before anything is written to
OUT; the command line reports it in one line, without a traceback.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import keras
import pytest

from crackscan.model_card import ModelCard, ModelCardError, file_sha256
from pipeline.inference import KERAS, tile_model_handler
from pipeline.score import run
from scoring_helpers import concrete, tiny_model

REPO = Path(__file__).resolve().parents[1]


def edit_card(model_dir: Path, **changes: object) -> None:
    card_path = model_dir / "model_card.json"
    card_path.write_text(json.dumps({**json.loads(card_path.read_text()), **changes}))


def replace_model(model_dir: Path, write: Callable[[Path], None]) -> None:
    """Puts another model file in place of model.keras, its hash in the card when it is a
    file (a folder has none; the format check comes first)."""
    target = model_dir / "model.keras"
    target.unlink()
    write(target)
    if target.is_file():
        edit_card(model_dir, model_sha256=file_sha256(str(target)))


def add_file(model_dir: Path, name: str, data: bytes) -> None:
    (model_dir / name).write_bytes(data)


def hdf5(path: Path) -> None:
    h5 = path.with_name("model.h5")
    tiny_model().save(h5)  # Keras' legacy HDF5 format
    h5.rename(path)


def lambda_model(path: Path) -> None:
    tiny_model(keras.layers.Lambda(lambda x: x * 1.0)).save(path)


def zip_of_a_photo(path: Path, real_data: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(concrete(real_data, "Positive", 1)[0], "photo.jpg")


def listed_tflite(model_dir: Path, name: str, data: bytes = b"") -> None:
    """Lists ``name`` as the card's tflite_file, with the hash of ``data``."""
    edit_card(model_dir, tflite_file=name, tflite_sha256=hashlib.sha256(data).hexdigest())


# (id, how the copy is spoiled, what the error must say)
CASES: list[tuple[str, Callable[[Path, Path], None], str]] = [
    ("card-is-a-list", lambda d, _: (d / "model_card.json").write_text('["Negative"]'),
     "must hold a JSON object, not a list"),
    ("card-is-a-string", lambda d, _: (d / "model_card.json").write_text('"model"'),
     "must hold a JSON object, not a str"),
    ("threshold-is-text", lambda d, _: edit_card(d, threshold="0.5"),
     "threshold must be a number, got '0.5'"),
    ("threshold-is-bool", lambda d, _: edit_card(d, threshold=True),
     "threshold must be a number, got True"),
    ("class-names-is-text", lambda d, _: edit_card(d, class_names="Negative,Positive"),
     "class_names must be a list of strings"),
    ("tile-size-negative", lambda d, _: edit_card(d, tile_size=-227),
     "tile_size must be a positive integer, got -227"),
    ("input-size-float", lambda d, _: edit_card(d, input_size=64.0),
     "input_size must be a positive integer, got 64.0"),
    ("sha256-not-hex", lambda d, _: edit_card(d, model_sha256=12345),
     "model_sha256 must be a sha256 hex digest"),
    ("tflite-file-climbs-out", lambda d, _: listed_tflite(d, "../model.tflite"),
     "tflite_file must be a file name inside the model folder"),
    ("tflite-file-absolute", lambda d, _: listed_tflite(d, "/etc/passwd"),
     "tflite_file must be a file name inside the model folder"),
    ("tflite-file-in-a-subfolder", lambda d, _: listed_tflite(d, "sub/model.tflite"),
     "tflite_file must be a file name inside the model folder"),
    ("tflite-file-empty", lambda d, _: listed_tflite(d, ""),
     "tflite_file must be a file name inside the model folder"),
    ("tflite-without-hash", lambda d, _: edit_card(d, tflite_file="model.tflite"),
     "missing fields ['tflite_sha256']"),
    ("tflite-not-litert", lambda d, _: (add_file(d, "model.tflite", b"not a flatbuffer"),
                                        listed_tflite(d, "model.tflite", b"not a flatbuffer")),
     "model.tflite: not a LiteRT (.tflite) model"),
    ("model-file-elsewhere", lambda d, _: edit_card(d, model_file="../other.keras"),
     "model_file must be 'model.keras'"),
    ("model-is-hdf5", lambda d, _: replace_model(d, hdf5),
     "an HDF5 (.h5) model, not a Keras .keras archive"),
    ("model-is-saved-model", lambda d, _: replace_model(
        d, lambda path: tiny_model().export(str(path), verbose=False)),
     "a TensorFlow SavedModel folder, not a Keras .keras archive"),
    ("model-is-a-folder", lambda d, _: replace_model(d, lambda path: path.mkdir()),
     "model.keras: cannot be read as a file"),
    ("model-is-text", lambda d, _: replace_model(d, lambda path: path.write_text("weights")),
     "not a Keras .keras archive (not a zip file)"),
    ("model-is-another-zip", lambda d, shared: replace_model(
        d, lambda path: zip_of_a_photo(path, shared)),
     "a zip file but not a Keras .keras archive, it lacks ['metadata.json', 'config.json']"),
    ("model-has-a-lambda-layer", lambda d, _: replace_model(d, lambda_model),
     "holds ['Lambda', '__lambda__'], Python code that loading the model would run"),
]


@pytest.mark.parametrize("spoil,message", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_a_model_dir_that_is_not_our_export_is_refused_before_anything_runs(
        spoil: Callable[[Path, Path], None], message: str, tmp_path: Path,
        tiny_model_dir: Path, real_data: Path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    spoil(model_dir, real_data)
    out = tmp_path / "out"
    with pytest.raises(ModelCardError) as refused:
        run(["--input", str(concrete(real_data, "Positive", 1)[0]), "--model",
             str(model_dir), "--output", str(out)])
    assert message in str(refused.value)
    assert not out.exists()


def test_a_worker_refuses_a_lambda_layer_too(tmp_path: Path, tiny_model_dir: Path):
    """The launcher's check comes first; a worker's own Keras load, in safe mode, would
    refuse the model as well rather than run its code."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    replace_model(model_dir, lambda_model)
    card = json.loads((model_dir / "model_card.json").read_text())
    handler = tile_model_handler(ModelCard.from_card(str(model_dir), card), 1, KERAS, 1)
    with pytest.raises(ValueError, match="Lambda.*safe_mode"):
        handler.load_model()


@pytest.mark.parametrize("spoil,message", [
    (lambda d: replace_model(d, lambda path: path.mkdir()), "cannot be read as a file"),
    (lambda d: listed_tflite(d, "../../model.tflite"), "tflite_file must be a file name"),
], ids=["model-is-a-folder", "tflite-file-climbs-out"])
def test_command_line_reports_a_wrong_model_dir_in_one_line(
        spoil: Callable[[Path], None], message: str, tmp_path: Path, tiny_model_dir: Path,
        real_data: Path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    spoil(model_dir)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.score", "--input",
         str(concrete(real_data, "Positive", 1)[0]), "--model", str(model_dir),
         "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("pipeline.score: error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()
