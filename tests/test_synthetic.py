"""The synthetic data must look like the real set's layout, be reproducible and be learnable."""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageFilter

from crackscan import synthetic


@pytest.fixture(autouse=True)
def _strict_truncation(monkeypatch):
    """Another test may have told Pillow to accept truncated files; these tests need it not to."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)


def _dark_line_mask(image: Image.Image) -> np.ndarray:
    """Pixels a quarter darker than their 11x11 median: thin dark structure.

    Broad stains and shadows move the median with them and so barely count; a crack's
    pixels are far below the median of their neighbourhood.
    """
    grey = image.convert("L")
    median = np.asarray(grey.filter(ImageFilter.MedianFilter(11)), dtype=np.float32)
    return np.asarray(grey, dtype=np.float32) < 0.75 * median


def _folder_bytes(root: str) -> dict[str, bytes]:
    contents = {}
    for name in synthetic.CLASS_NAMES:
        for file_name in sorted(os.listdir(os.path.join(root, name))):
            with open(os.path.join(root, name, file_name), "rb") as handle:
                contents[f"{name}/{file_name}"] = handle.read()
    return contents


def test_texture_and_patch_shapes():
    rng = np.random.default_rng(0)
    texture = synthetic.concrete_texture(rng, 50, 80)
    assert texture.shape == (50, 80, 3) and texture.dtype == np.uint8
    for crack in (False, True):
        patch = synthetic.make_patch(rng, crack, size=64)
        assert patch.shape == (64, 64, 3) and patch.dtype == np.uint8


def test_draw_crack_copies_and_crosses_a_good_part_of_the_image():
    image = synthetic.concrete_texture(np.random.default_rng(1), 227, 227)
    original = image.copy()
    cracked = synthetic.draw_crack(image, np.random.default_rng(2))
    np.testing.assert_array_equal(image, original)
    changed = np.abs(cracked.astype(int) - image.astype(int)).max(axis=2) > 30
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) > 0.4 * 227
    # A crack only darkens, apart from rounding.
    assert (cracked.astype(int) - image.astype(int)).max() <= 1


def test_patch_folder_layout_sizes_and_decoding(tmp_path):
    counts = synthetic.write_patch_folder(str(tmp_path), per_class=4, seed=5)
    assert counts == {"Negative": 4, "Positive": 4}
    assert sorted(os.listdir(tmp_path)) == ["Negative", "Positive"]
    for name in synthetic.CLASS_NAMES:
        files = sorted(os.listdir(tmp_path / name))
        assert files == ["00001.jpg", "00002.jpg", "00003.jpg", "00004.jpg"]
        for file_name in files:
            with Image.open(tmp_path / name / file_name) as image:
                assert image.format == "JPEG"
                image.load()
                assert image.mode == "RGB" and image.size == (227, 227)


def test_patch_folder_custom_size(tmp_path):
    synthetic.write_patch_folder(str(tmp_path), per_class=1, size=96)
    with Image.open(tmp_path / "Positive" / "00001.jpg") as image:
        assert image.size == (96, 96)


def test_patch_folder_is_deterministic_per_seed(tmp_path):
    synthetic.write_patch_folder(str(tmp_path / "a"), per_class=3, seed=7)
    synthetic.write_patch_folder(str(tmp_path / "b"), per_class=3, seed=7)
    synthetic.write_patch_folder(str(tmp_path / "c"), per_class=3, seed=8)
    first, again, other = (_folder_bytes(str(tmp_path / d)) for d in "abc")
    assert first == again
    assert first.keys() == other.keys()
    assert all(first[key] != other[key] for key in first)


def test_smaller_folder_is_a_prefix_of_a_larger_one(tmp_path):
    synthetic.write_patch_folder(str(tmp_path / "small"), per_class=2, seed=3)
    synthetic.write_patch_folder(str(tmp_path / "large"), per_class=3, seed=3)
    small, large = _folder_bytes(str(tmp_path / "small")), _folder_bytes(str(tmp_path / "large"))
    assert small == {key: large[key] for key in small}


def test_crack_patches_have_more_thin_dark_structure(tmp_path):
    synthetic.write_patch_folder(str(tmp_path), per_class=20, seed=11)
    scores = {}
    for name in synthetic.CLASS_NAMES:
        scores[name] = []
        for file_name in sorted(os.listdir(tmp_path / name)):
            with Image.open(tmp_path / name / file_name) as image:
                scores[name].append(float(_dark_line_mask(image).mean()))
    negative_median = float(np.median(scores["Negative"]))
    assert min(scores["Positive"]) > negative_median
    assert float(np.median(scores["Positive"])) > 2 * negative_median


def test_survey_archive_members_decoding_and_boxes(tmp_path):
    path = str(tmp_path / "nested" / "survey.zip")
    members = synthetic.write_survey_archive(path, photos=4, seed=3, size=(640, 480))
    expected = [f"survey/DJI_{i:04d}.JPG" for i in range(1, 5)] + ["survey/DJI_BROKEN.JPG"]
    assert [member["name"] for member in members] == expected
    assert sum(member["crack"] is True for member in members) == 2
    assert members[-1]["crack"] is None and members[-1]["boxes"] == []
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == expected
        for member in members:
            data = archive.read(member["name"])
            if member["crack"] is None:
                assert len(data) == 2048
                with Image.open(io.BytesIO(data)) as image:
                    assert image.format == "JPEG"
                    with pytest.raises(OSError):
                        image.load()
                continue
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                assert image.mode == "RGB" and image.size == (640, 480)
                photo = image.copy()
            boxes = member["boxes"]
            assert (1 <= len(boxes) <= 3) if member["crack"] else boxes == []
            inside = np.zeros((480, 640), dtype=bool)
            for x0, y0, x1, y1 in boxes:
                assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
                inside[y0:y1, x0:x1] = True
            if boxes:
                dark = _dark_line_mask(photo)
                assert dark[inside].mean() > 3 * dark[~inside].mean()


def test_survey_cracks_are_local_at_full_size(tmp_path):
    members = synthetic.write_survey_archive(str(tmp_path / "s.zip"), photos=2, seed=4)
    boxes = [box for member in members for box in member["boxes"]]
    assert boxes
    for x0, y0, x1, y1 in boxes:
        assert x1 <= 1600 and y1 <= 1200
        assert 100 <= max(x1 - x0, y1 - y0) <= 550


def test_survey_archive_is_deterministic_per_seed(tmp_path):
    paths = [tmp_path / f"{name}.zip" for name in "abc"]
    for path, seed in zip(paths, (5, 5, 6)):
        synthetic.write_survey_archive(str(path), photos=2, seed=seed, size=(320, 240))
    first, again, other = (path.read_bytes() for path in paths)
    assert first == again
    assert first != other
