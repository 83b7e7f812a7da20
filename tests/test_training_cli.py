"""The training commands' command lines: a mistyped flag stops them with the nearest valid
one (exit 2), and a bad input ends in one line naming the file and the reason (exit 1),
never a traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training import build_dataset, train

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("main,argv,suggestion", [
    (build_dataset.main, ["--source", "x", "--output", "y", "--shard", "3"], "--shards"),
    (build_dataset.main, ["--source", "x", "--output", "y", "--tile_size", "224"],
     "--tile-size"),
    (train.main, ["--data", "x", "--output", "y", "--fine_tune_epochs", "2"],
     "--fine-tune-epochs"),
    (train.main, ["--data", "x", "--output", "y", "--epoch", "2"], "--epochs"),
], ids=["shard", "tile_size", "fine_tune_epochs", "epoch"])
def test_a_mistyped_flag_stops_before_any_work_with_the_nearest_flag(main, argv, suggestion,
                                                                     capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert f"did you mean {suggestion}?" in capsys.readouterr().err


def test_a_stray_positional_argument_is_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(["--data", "x", "--output", "y", "stray"])
    assert stop.value.code == 2 and "unrecognized arguments: stray" in capsys.readouterr().err


def run_command(module: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO, text=True,
                          capture_output=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_training_on_a_folder_without_a_data_set_is_one_line(tmp_path: Path):
    line = one_line_error(run_command("training.train", "--data", str(tmp_path), "--output",
                                      str(tmp_path / "model"), "--weights", "none"))
    assert line == (f"training.train: error: {tmp_path}/manifest.json: no such file; run "
                    f"training.build_dataset first")


def test_an_unreadable_manifest_is_one_line(tmp_path: Path):
    (tmp_path / "manifest.json").write_text("{not json")
    line = one_line_error(run_command("training.train", "--data", str(tmp_path), "--output",
                                      str(tmp_path / "model"), "--weights", "none"))
    assert f"{tmp_path}/manifest.json: not a readable manifest" in line


def test_missing_shards_are_one_line(tmp_path: Path):
    (tmp_path / "manifest.json").write_text(
        '{"class_names": ["Negative", "Positive"], "counts": {"train": {"total": 10}}, '
        '"counts_by_source": {"train": {}}, "sources": [], '
        '"shards": {"train": ["train-00000-of-00001.tfrecord"]}}')
    line = one_line_error(run_command("training.train", "--data", str(tmp_path), "--output",
                                      str(tmp_path / "model"), "--weights", "none"))
    assert (f"{tmp_path}: train shards listed in manifest.json are missing: "
            f"train-00000-of-00001.tfrecord") in line


def test_an_empty_source_is_one_line(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "Positive").mkdir()
    (tmp_path / "empty" / "Positive" / "notes.txt").write_text("no photos here")
    line = one_line_error(run_command("training.build_dataset", "--source",
                                      str(tmp_path / "empty"), "--output",
                                      str(tmp_path / "out")))
    assert line == (f"training.build_dataset: error: {tmp_path / 'empty'}: no decodable "
                    f"image inside ['Negative', 'Positive'] folders")
    missing = one_line_error(run_command("training.build_dataset", "--source",
                                         str(tmp_path / "nothing-here"), "--output",
                                         str(tmp_path / "out")))
    assert f"{tmp_path / 'nothing-here'}: matches no file" in missing
