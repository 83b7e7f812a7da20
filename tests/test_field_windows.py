"""Mask sources: windows labelled from crack masks, cut exactly as the scorer tiles, and a
split that keeps every window of a photo and every near-copy of it on one side."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance

from crackscan.labels import EXCLUDED, NEGATIVE, POSITIVE
from crackscan.tiles import default_stride, plan_tiles
from training import build_dataset, tfrecords, windows

SIZE = 224


def mask_with(*boxes: tuple[int, int, int, int, int], side: int = SIZE) -> np.ndarray:
    """A hand-made mask: each box ``(x0, y0, x1, y1, value)`` painted in."""
    mask = np.zeros((side, side), np.uint8)
    for x0, y0, x1, y1, value in boxes:
        mask[y0:y1, x0:x1] = value
    return mask


@pytest.mark.parametrize("mask,expected", [
    (mask_with((110, 20, 113, 200, 255)), (POSITIVE, False)),  # a crack through the centre
    (mask_with((10, 10, 12, 60, 255)), (EXCLUDED, False)),  # only near the edge
    (mask_with(), (NEGATIVE, False)),  # nothing
    (mask_with((0, 100, 224, 106, 128)), (NEGATIVE, True)),  # a joint, no crack
    (mask_with((0, 100, 224, 106, 128), (112, 112, 114, 114, 255)),
     (POSITIVE, False)),  # a joint and a crack in the centre
], ids=["crack-at-centre", "crack-at-edge", "none", "joints-only", "joint-and-crack"])
def test_window_label_rule_on_hand_made_masks(mask, expected):
    assert windows.label_window(mask, 0, 0, SIZE) == expected


def test_a_crack_just_outside_the_window_leaves_it_out_but_one_far_away_does_not():
    mask = np.zeros((SIZE, 2 * SIZE), np.uint8)
    mask[:, SIZE + 2] = 255  # 2 px right of the first window, within the 4 px margin
    assert windows.label_window(mask, 0, 0, SIZE) == (EXCLUDED, False)
    mask[:] = 0
    mask[:, SIZE + 20] = 255
    assert windows.label_window(mask, 0, 0, SIZE) == (NEGATIVE, False)


def test_windows_are_the_scorers_tiles_and_a_small_photo_keeps_its_crack():
    """A 160 px photo is scaled up to one tile, as the scorer does; its mask follows with
    nearest-neighbour resampling, so a 1-px crack stays crack (not a blend of 0 and 255)."""
    rgb = np.full((160, 160, 3), 128, np.uint8)
    mask = mask_with((80, 0, 81, 160, 255), side=160)
    plan = plan_tiles(160, 160, SIZE, default_stride(SIZE), 10**8)
    (window,) = windows.windows(plan, rgb, mask)
    assert window.label == POSITIVE and window.pixels.shape == (SIZE, SIZE, 3)
    big = np.zeros((500, 700, 3), np.uint8)
    plan = plan_tiles(700, 500, SIZE, default_stride(SIZE), 10**8)
    boxes = [w.box for w in windows.windows(plan, big, np.zeros((500, 700), np.uint8))]
    assert boxes == [box for _, box, _ in plan.tiles(big)]


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def uav75_photos(shared_dir: Path) -> list[tuple[Path, Path]]:
    """Twelve real uav75 drone photos (512x512, cracks and formwork joints) with masks: the
    only source with joints (hard negatives); GPL-3.0, so not among the checked-in images."""
    from conftest import require

    root = require(shared_dir / "data" / "field" / "uav75")
    images = sorted((root / "images").glob("*.jpg"))[:12]
    return [(image, root / "masks" / f"{image.stem}.png") for image in images]


@pytest.fixture(scope="module")
def field_photos(real_data: Path) -> list[tuple[Path, Path]]:
    """Twelve real field photos with masks, checked in: eight 256 px drone tiles of bridge
    decks (uavcrack) then four 160 px pavement photos (shadowcrack), each of another photo."""
    photos = []
    for source in ("uavcrack", "shadowcrack"):
        root = real_data / "data" / "field" / source
        images = sorted((root / "images").glob("*.jpg"))
        photos += [(image, root / "masks" / f"{image.stem}.png") for image in images]
    assert len(photos) == 12
    return photos


def mask_source(root: Path, photos: list[tuple[Path, Path]]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for image, mask in photos:
        shutil.copy(image, root / "images" / image.name)
        shutil.copy(mask, root / "masks" / mask.name)
    return root


def read_records(output: Path) -> list[dict]:
    rows = []
    for split in build_dataset.SPLITS:
        for path in sorted(output.glob(f"{split}-*.tfrecord")):
            for serialized in tf.data.TFRecordDataset(str(path)):
                example = tfrecords.parse(serialized)
                row = {key.split("/")[1]: example[key].numpy() for key in example}
                rows.append(row | {"split": split})
    return rows


@pytest.mark.shared("the uav75 drone photos of ../shared/data/field (formwork joints, the "
                    "hard negatives; GPL-3.0, not checked in)")
def test_mask_source_windows_carry_label_box_source_and_the_scorers_pixels(uav75_photos,
                                                                          tmp_path):
    source = mask_source(tmp_path / "uav", uav75_photos)
    manifest = build_dataset.build([f"drone={source}"], str(tmp_path / "out"), shards=2)
    rows = read_records(tmp_path / "out")
    assert manifest["sources"][0] | {"licence": None} == {
        "name": "drone", "path": str(source), "kind": "masks", "photos": 12, "licence": None}
    assert {r["source"] for r in rows} == {b"drone"}
    # 512 px photos: 3 x 3 tiles at the default stride, all of them in val/test tfrecords.
    per_photo = {}
    for row in rows:
        per_photo.setdefault(row["uri"], []).append(row)
    plan = plan_tiles(512, 512, SIZE, default_stride(SIZE), 10**8)
    for uri, photo_rows in per_photo.items():
        rgb = np.asarray(Image.open(uri.decode()).convert("RGB"))
        mask = np.asarray(Image.open(uri.decode().replace("/images/", "/masks/")
                                     .replace(".jpg", ".png")))
        expected = {w.box: w for w in windows.windows(plan, rgb, mask)}
        for row in photo_rows:
            window = expected[tuple(int(v) for v in row["box"])]
            assert row["label"] == window.label and row["hard_negative"] == window.hard_negative
            pixels = tfrecords.decode_pixels(tf.constant(row["encoded"]), tf.constant(b"png"))
            assert np.array_equal(pixels.numpy(), window.pixels)
        if photo_rows[0]["split"] != "train":
            assert len(photo_rows) == plan.count
        else:
            assert all(r["label"] != EXCLUDED for r in photo_rows)
    counts = manifest["counts_by_source"]
    assert sum(counts[s]["drone"]["hard_negative"] for s in build_dataset.SPLITS) == sum(
        r["hard_negative"] for r in rows) > 0


def test_a_photo_and_its_near_copies_land_in_one_split(field_photos, tmp_path):
    """Copies an augmented export would hold (mirrored, turned, brightened, re-encoded),
    under unrelated names and without any manifest, stay with their original."""
    photos = field_photos[:10]
    source = mask_source(tmp_path / "src", photos)
    original, mask = photos[0]
    image = Image.open(original)
    copies = {
        "copy_a": image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "copy_b": ImageEnhance.Brightness(image.rotate(90)).enhance(1.05),
        "copy_c": image,
    }
    mask_image = Image.open(mask)
    masks = {"copy_a": mask_image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
             "copy_b": mask_image.rotate(90), "copy_c": mask_image}
    for name, copy in copies.items():
        (source / "images" / f"{name}.jpg").write_bytes(jpeg(copy, 85))
        masks[name].save(source / "masks" / f"{name}.png")
    # Enough unrelated photos that a split by file would separate the four by chance.
    for fraction in (0.3, 0.5, 0.7):
        manifest = build_dataset.build([str(source)], str(tmp_path / f"out{fraction}"),
                                       shards=1, val_fraction=0.0, test_fraction=fraction)
        rows = read_records(tmp_path / f"out{fraction}")
        splits = {r["split"] for r in rows
                  if Path(r["uri"].decode()).stem in {original.stem, *copies}}
        assert len(splits) == 1
        assert manifest["groups"]["near_copy_pairs"] >= 3  # joining the four
        assert manifest["groups"]["largest_group"] >= 4


def test_missing_and_mismatched_masks_are_reported_and_skipped(field_photos, tmp_path):
    source = mask_source(tmp_path / "src", field_photos[:4])
    no_mask, wrong_size, rgb_mask = (p[0].stem for p in field_photos[1:4])
    width, height = Image.open(field_photos[2][0]).size
    assert Image.open(field_photos[3][0]).size == (width, height)
    (source / "masks" / f"{no_mask}.png").unlink()
    Image.new("L", (100, 100)).save(source / "masks" / f"{wrong_size}.png")
    Image.new("RGB", (width, height)).save(source / "masks" / f"{rgb_mask}.png")
    manifest = build_dataset.build([str(source)], str(tmp_path / "out"), shards=1)
    errors = {Path(e["uri"]).stem: e for e in manifest["errors"]}
    assert errors[no_mask]["error"] == f"no mask: expected masks/{no_mask}.png"
    assert f"mask is 100x100 but its image is {width}x{height}" in errors[wrong_size]["error"]
    assert "not a single-channel 8-bit mask" in errors[rgb_mask]["error"]
    assert {e["stage"] for e in manifest["errors"]} == {"mask"}
    assert manifest["sources"][0]["photos"] == 1
    assert {r["uri"] for r in read_records(tmp_path / "out")} == {
        str(source / "images" / field_photos[0][0].name).encode()}


def test_class_folders_and_mask_sources_build_one_data_set(field_photos, fixture_concrete_dir,
                                                           tmp_path):
    folders = tmp_path / "lab"
    for name in build_dataset.CLASS_NAMES:
        (folders / name).mkdir(parents=True)
        for path in sorted((fixture_concrete_dir / name).glob("*.jpg"))[:20]:
            shutil.copy(path, folders / name / path.name)
    drone = mask_source(tmp_path / "drone", field_photos)
    output = tmp_path / "out"
    build_dataset.main(["--source", str(folders), "--source", str(drone), "--output",
                        str(output), "--licence", "lab=CC BY 4.0"])
    manifest = json.loads((output / "manifest.json").read_text())
    assert [(s["name"], s["kind"], s["licence"]) for s in manifest["sources"]] == [
        ("lab", "class folders", "CC BY 4.0"), ("drone", "masks", None)]
    by_source = manifest["counts_by_source"]
    assert sum(by_source[s]["lab"]["total"] for s in build_dataset.SPLITS) == 40
    assert sum(by_source[s]["drone"]["total"] for s in build_dataset.SPLITS) == sum(
        manifest["counts"][s]["total"] for s in build_dataset.SPLITS) - 40
    assert manifest["tile_size"] == SIZE
    assert manifest["command"].startswith("python -m training.build_dataset --source")


def test_validation_loss_weighs_every_source_and_class_as_training_samples_them(
        field_photos, fixture_concrete_dir, tmp_path):
    from training import input_pipeline

    folders = tmp_path / "lab"
    for name in build_dataset.CLASS_NAMES:
        (folders / name).mkdir(parents=True)
        for path in sorted((fixture_concrete_dir / name).glob("*.jpg"))[:30]:
            shutil.copy(path, folders / name / path.name)
    output = tmp_path / "out"
    build_dataset.main(["--source", str(folders), "--source",
                        str(mask_source(tmp_path / "drone", field_photos)),
                        "--output", str(output)])
    counts = json.loads((output / "manifest.json").read_text())["counts_by_source"]["train"]
    sums: dict[tuple[str, int], float] = {}
    batches = input_pipeline.balanced_validation(str(output), "train", 32, 16)
    sources = [s.decode() for _, _, meta in input_pipeline.dataset(
        str(output), "train", 32, 16, with_meta=True) for s in meta["source"].numpy()]
    weights = np.concatenate([w.numpy() for _, _, w in batches])
    labels = np.concatenate([y.numpy() for _, y, _ in batches])
    assert len(weights) == len(sources) == sum(c["total"] for c in counts.values())
    for source, label, weight in zip(sources, labels, weights):
        sums[source, int(label)] = sums.get((source, int(label)), 0.0) + float(weight)
    shares = input_pipeline.stream_weights(counts)
    assert len(shares) >= 3 and sums.keys() == shares.keys()
    for stream, share in shares.items():
        assert sums[stream] == pytest.approx(share * len(weights), rel=1e-5), stream


def test_the_largest_clear_square_keeps_its_margin_from_every_crack_pixel():
    mask = np.zeros((200, 300), np.uint8)
    mask[:, 100] = 255  # a crack down column 100: the clear side starts 17 px right of it
    assert windows.largest_clear_square(mask, margin=16) == (0, 117, 183)
    mask[150, 250] = 255  # a crack speck in the clear side bounds the square anew
    top, left, side = windows.largest_clear_square(mask, margin=16)
    rows, cols = np.nonzero(mask >= windows.CRACK_MIN)
    square_rows, square_cols = np.mgrid[top:top + side, left:left + side]
    gaps = np.hypot(square_rows.reshape(-1, 1) - rows, square_cols.reshape(-1, 1) - cols)
    assert gaps.min() > 16 and side >= 120
    assert windows.largest_clear_square(np.zeros((50, 50), np.uint8)) is None  # no crack
    assert windows.largest_clear_square(np.full((50, 50), 255, np.uint8)) is None


def test_clear_crops_add_one_intact_window_to_photos_without_one(field_photos, tmp_path):
    """The 160 px pavement photos each have one window, cracked: with --clear-crops each
    whose clear square is big enough adds one Negative, the crack-free pavement scaled to a
    tile; the 256 px deck tiles that already give a Negative window add nothing."""
    source = mask_source(tmp_path / "field", field_photos)
    plain_manifest = build_dataset.build([f"field={source}"], str(tmp_path / "plain"))
    manifest = build_dataset.build([f"field={source}"], str(tmp_path / "crops"),
                                   clear_crops=["field"])
    plain, cropped = read_records(tmp_path / "plain"), read_records(tmp_path / "crops")
    assert len(cropped) > len(plain)
    assert "scaled to a tile" in manifest["options"]["window_rule"]
    assert "scaled to a tile" not in plain_manifest["options"]["window_rule"]
    by_photo: dict[bytes, list[dict]] = {}
    for row in cropped:
        by_photo.setdefault(row["uri"], []).append(row)
    for uri, rows in by_photo.items():
        before = [r for r in plain if r["uri"] == uri]
        if any(r["label"] == NEGATIVE for r in before):
            assert len(rows) == len(before)
            continue
        new = [r for r in rows if r["label"] == NEGATIVE]
        assert len(rows) - len(before) == len(new) <= 1
        for row in new:
            image = Image.open(uri.decode()).convert("RGB")
            mask = np.asarray(Image.open(uri.decode().replace("/images/", "/masks/")
                                         .replace(".jpg", ".png")))
            plan = plan_tiles(image.width, image.height, SIZE, default_stride(SIZE), 10**8)
            crop = windows.clear_crop(plan, np.asarray(image), mask, len(before))
            pixels = tfrecords.decode_pixels(tf.constant(row["encoded"]), tf.constant(b"png"))
            assert pixels.shape == (SIZE, SIZE, 3)
            assert np.array_equal(pixels.numpy(), crop.pixels)
            x0, y0, x1, y1 = (int(v) for v in row["box"])
            assert (mask[y0:y1, x0:x1] >= windows.CRACK_MIN).sum() == 0


def test_clear_crops_of_a_source_that_is_not_a_mask_source_are_refused(fixture_concrete_dir,
                                                                      tmp_path):
    with pytest.raises(build_dataset.BuildError, match=r"--clear-crops names \['concrete'\]"):
        build_dataset.build([str(fixture_concrete_dir)], str(tmp_path / "out"),
                            clear_crops=["concrete"])


def test_a_class_folder_sources_own_manifest_and_description_are_not_rejected(
        fixture_concrete_dir, tmp_path):
    source = tmp_path / "decks"
    shutil.copytree(fixture_concrete_dir, source)
    names = sorted(p.stem for p in source.rglob("*.jpg"))
    (source / "manifest.csv").write_text("name,group\n" + "".join(
        f"{name},deck\n" for name in names))
    (source / "SOURCE.md").write_text("- Licence: CC BY 4.0\n")
    (source / "Negative" / "notes.txt").write_text("not an image")
    manifest = build_dataset.build([str(source)], str(tmp_path / "out"))
    assert [e["uri"] for e in manifest["errors"]] == [str(source / "Negative" / "notes.txt")]
    assert manifest["sources"][0]["licence"] == "CC BY 4.0"
    assert manifest["groups"]["largest_group"] == len(names)
