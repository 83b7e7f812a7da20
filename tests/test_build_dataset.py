"""The TFRecord builder on real images (checked in; the full set in ../shared): stable splits,
dedup, bad files, archives."""
from __future__ import annotations

import json
import logging
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from training import build_dataset, input_pipeline, tfrecords


def read_split(output: Path, split: str) -> list[dict]:
    rows = []
    for path in sorted(output.glob(f"{split}-*.tfrecord")):
        for serialized in tf.data.TFRecordDataset(str(path)):
            example = tfrecords.parse(serialized)
            rows.append({key.split("/")[1]: example[key].numpy() for key in example})
    return rows


@pytest.fixture(scope="module")
def small_source(fixture_concrete_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 60 checked-in real images per class plus duplicates, a label conflict and broken
    files."""
    root = tmp_path_factory.mktemp("source")
    for name in build_dataset.CLASS_NAMES:
        (root / name).mkdir()
        for path in sorted((fixture_concrete_dir / name).glob("*.jpg"))[:60]:
            shutil.copy(path, root / name / path.name)
    positives = sorted((root / "Positive").glob("*.jpg"))
    shutil.copy(positives[0], root / "Positive" / "copy_of_first.jpg")
    shutil.copy(positives[1], root / "Negative" / "conflicting_label.jpg")
    (root / "Negative" / "empty.jpg").write_bytes(b"")
    (root / "Negative" / "notes.jpg").write_text("field notes, not a photo")
    (root / "Positive" / "truncated.jpg").write_bytes(positives[2].read_bytes()[:3000])
    return root


@pytest.fixture(scope="module")
def small_build(small_source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("built")
    return output, build_dataset.build(str(small_source), str(output), shards=3)


def test_splits_are_disjoint_by_content_and_cover_every_unique_image(small_build, small_source):
    output, manifest = small_build
    hashes = {split: [r["sha256"].decode() for r in read_split(output, split)]
              for split in build_dataset.SPLITS}
    for split, values in hashes.items():
        assert len(values) == len(set(values)) == manifest["counts"][split]["total"]
    assert not set(hashes["train"]) & set(hashes["val"])
    assert not set(hashes["train"]) & set(hashes["test"])
    assert not set(hashes["val"]) & set(hashes["test"])
    # 120 real images, minus the one whose bytes also appear under the other class.
    assert sum(len(v) for v in hashes.values()) == 119
    assert set(manifest["shards"]["train"]) == {p.name for p in output.glob("train-*")}
    assert manifest["shards"]["train"][0] == "train-00000-of-00003.tfrecord"


def read_for_training(data_dir: Path, split: str) -> list[str]:
    return [sha.decode() for _, _, meta in input_pipeline.dataset(str(data_dir), split, 32, 64,
                                                                  with_meta=True)
            for sha in meta["sha256"].numpy()]


def test_a_folder_built_again_holds_and_feeds_only_the_new_build(small_source, tmp_path,
                                                                 caplog):
    """Built with three shards and again with two, the folder keeps only the two, and
    training reads the split's windows once each. A file the earlier manifest does not list
    stays, however it is named, and is not read; a listed shard that is gone is named."""
    build_dataset.build(str(small_source), str(tmp_path), shards=3)
    users = tmp_path / "train-00000-of-00009.tfrecord"
    shutil.copy(tmp_path / "test-00000-of-00003.tfrecord", users)
    with caplog.at_level(logging.INFO, logger="crackscan.build_dataset"):
        manifest = build_dataset.build(str(small_source), str(tmp_path), shards=2)
    assert "removed 9 shards of an earlier build" in caplog.text
    assert sorted(p.name for p in tmp_path.glob("*.tfrecord")) == sorted(
        [users.name] + [name for split in build_dataset.SPLITS
                        for name in manifest["shards"][split]])

    train = read_for_training(tmp_path, "train")
    assert len(train) == len(set(train)) == manifest["counts"]["train"]["total"]

    (tmp_path / "train-00001-of-00002.tfrecord").unlink()
    with pytest.raises(input_pipeline.DataError, match="train-00001-of-00002.tfrecord"):
        input_pipeline.shard_files(str(tmp_path), "train")


def test_an_unreadable_earlier_manifest_leaves_the_folder_and_builds(small_source, tmp_path,
                                                                     caplog):
    (tmp_path / "manifest.json").write_text("{ not json")
    (tmp_path / "val-00000-of-00005.tfrecord").write_bytes(b"kept")
    with caplog.at_level(logging.WARNING, logger="crackscan.build_dataset"):
        manifest = build_dataset.build(str(small_source), str(tmp_path), shards=1)
    assert "manifest.json: not a readable manifest" in caplog.text
    assert (tmp_path / "val-00000-of-00005.tfrecord").read_bytes() == b"kept"
    assert input_pipeline.read_manifest(str(tmp_path))["shards"] == manifest["shards"]


def test_split_is_stable_across_runs_and_shard_counts(small_build, small_source, tmp_path):
    output, manifest = small_build
    again = build_dataset.build(str(small_source), str(tmp_path), shards=1)
    assert again["source_fingerprint"] == manifest["source_fingerprint"]
    for split in build_dataset.SPLITS:
        first = sorted(r["sha256"] for r in read_split(output, split))
        second = sorted(r["sha256"] for r in read_split(tmp_path, split))
        assert first == second
    for split in build_dataset.SPLITS:
        assert again["counts"][split] == manifest["counts"][split]


def test_split_fractions_hold_per_source(small_build):
    _, manifest = small_build
    counts = manifest["counts"]
    total = sum(counts[split]["total"] for split in build_dataset.SPLITS)
    assert counts["test"]["total"] / total == pytest.approx(0.1, abs=0.02)
    assert counts["val"]["total"] / total == pytest.approx(0.1, abs=0.02)


def test_duplicates_kept_once_and_conflicts_rejected(small_build, small_source):
    _, manifest = small_build
    positives = sorted((small_source / "Positive").glob("0*.jpg"))
    assert manifest["duplicates"] == [{"uri": str(small_source / "Positive" / "copy_of_first.jpg"),
                                       "same_as": str(positives[0])}]
    conflicts = {e["uri"] for e in manifest["errors"] if "both classes" in e["error"]}
    assert conflicts == {str(small_source / "Negative" / "conflicting_label.jpg"),
                         str(positives[1])}


def test_undecodable_files_are_reported_with_path_and_reason(small_build, small_source):
    output, manifest = small_build
    errors = {e["uri"].rsplit("/", 1)[-1]: e["error"] for e in manifest["errors"]}
    assert "empty file" in errors["empty.jpg"]
    assert "not an image" in errors["notes.jpg"]
    assert "truncated" in errors["truncated.jpg"]
    assert manifest["counts"]["rejected"] == len(manifest["errors"]) == 5
    written = {r["uri"].decode().rsplit("/", 1)[-1]
               for split in build_dataset.SPLITS for r in read_split(output, split)}
    assert not written & {"empty.jpg", "notes.jpg", "truncated.jpg"}


def test_console_output_names_the_rejected_files(small_source, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="crackscan.build_dataset")
    build_dataset.main(["--source", str(small_source), "--output", str(tmp_path)])
    assert "rejected 5" in capsys.readouterr().out
    assert any("empty.jpg" in message and "empty file" in message
               for message in caplog.messages)
    name = small_source.name
    assert f"source {name}: reading {small_source} (class folders)" in caplog.messages
    # 120 photos, a copy and a conflicting label read; the 3 broken files rejected on the
    # way (the conflict is found once every source is read)
    assert any(message.startswith(f"source {name}: 122 images read, 122 examples, 3 rejected")
               for message in caplog.messages)


def test_records_hold_the_original_jpeg_bytes(small_build, small_source):
    output, _ = small_build
    row = read_split(output, "train")[0]
    source = Path(row["uri"].decode())
    assert row["encoded"] == source.read_bytes()
    assert row["format"] == b"jpeg"
    assert row["label"] == build_dataset.CLASS_NAMES.index(source.parent.name)
    pixels = tfrecords.decode_pixels(tf.constant(row["encoded"]), tf.constant(row["format"]))
    assert np.array_equal(pixels.numpy(), np.asarray(Image.open(source).convert("RGB")))


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_sources_give_the_same_data_set(kind, small_build, small_source, tmp_path):
    _, manifest = small_build
    archive = tmp_path / f"source.{kind}"
    files = sorted(p for p in small_source.rglob("*") if p.is_file())
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as handle:
            for path in files:
                handle.write(path, f"crack-set/{path.relative_to(small_source)}")
    else:
        with tarfile.open(archive, "w:gz") as handle:
            for path in files:
                handle.add(path, f"crack-set/{path.relative_to(small_source)}")
    from_archive = build_dataset.build(str(archive), str(tmp_path / "out"), shards=3)
    assert from_archive["source_fingerprint"] == manifest["source_fingerprint"]
    assert from_archive["counts"] == manifest["counts"]
    assert all("!crack-set/" in e["uri"] for e in from_archive["errors"])


def test_non_jpeg_inputs_are_stored_as_the_pixels_the_scorer_sees(fixture_concrete_dir,
                                                                  tmp_path):
    source = tmp_path / "src"
    (source / "Positive").mkdir(parents=True)
    (source / "Negative").mkdir()
    image = Image.open(sorted((fixture_concrete_dir / "Positive").glob("*.jpg"))[0])
    image.convert("CMYK").save(source / "Positive" / "cmyk.jpg")
    image.save(source / "Negative" / "scan.webp", lossless=True)
    manifest = build_dataset.build(str(source), str(tmp_path / "out"), shards=1)
    rows = [r for split in build_dataset.SPLITS for r in read_split(tmp_path / "out", split)]
    assert manifest["counts"]["rejected"] == 0 and len(rows) == 2
    from crackscan import decode

    for row in rows:
        assert row["format"] == b"png"
        original = Path(row["uri"].decode()).read_bytes()
        pixels = tfrecords.decode_pixels(tf.constant(row["encoded"]), tf.constant(row["format"]))
        assert np.array_equal(pixels.numpy(), decode.decode_rgb(original))


def test_manifest_is_json_with_options_and_fingerprint(small_build):
    output, manifest = small_build
    on_disk = json.loads((output / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["options"]["shards"] == 3
    assert len(on_disk["source_fingerprint"]) == 64


@pytest.mark.shared("the 4,000 shared concrete images")
def test_full_shared_set_builds_without_loss(concrete_dataset):
    manifest = json.loads((concrete_dataset / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["rejected"] == 0 and counts["duplicates"] == 0
    assert sum(counts[s]["total"] for s in build_dataset.SPLITS) == 4000
    assert manifest["image_sizes"] == {"227x227": 4000}
    for split in build_dataset.SPLITS:
        assert 0.4 < counts[split]["Positive"] / counts[split]["total"] < 0.6
