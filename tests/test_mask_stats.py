"""``training.mask_stats`` on the real field masks checked into ``tests/fixtures``."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crackscan.crack_measure import measure
from training import mask_stats

SOURCES = ("uavcrack", "shadowcrack")


@pytest.fixture(scope="module")
def field(real_data: Path) -> Path:
    return real_data / "data" / "field"


def test_each_source_gets_its_masks_measured_a_table_and_histograms(
        field: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    png = tmp_path / "plots" / "widths.png"
    stats = mask_stats.main([*(arg for source in SOURCES
                               for arg in ("--source", str(field / source))),
                             "--histogram", str(png)])
    assert [source.name for source in stats] == list(SOURCES)
    for source in stats:
        masks = sorted((field / source.name / "masks").glob("*.png"))
        assert source.masks == len(masks) == len(source.measured) + source.no_crack
        assert source.unreadable == ()
        # The same numbers as measuring each mask's crack pixels directly.
        direct = [measure(np.asarray(Image.open(path)) == 255) for path in masks]
        assert list(source.measured) == [m for m in direct if m.width_max_px is not None]
        low, median, high = source.spread("width_max_px")
        assert 1 <= low <= median <= high
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("| source | masks |")
    assert all(f"| {source} | " in printed for source in SOURCES)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_joints_are_left_out_and_a_bad_mask_is_named_and_counted(
        field: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """A real crack mask whose crack is relabelled 128 (a joint) holds no crack; a text file
    named .png is unreadable, named with its reason, and still counted."""
    source = tmp_path / "jointed"
    (source / "masks").mkdir(parents=True)
    real = sorted((field / "uavcrack" / "masks").glob("*.png"))[0]
    shutil.copy(real, source / "masks" / "crack.png")
    mask = np.asarray(Image.open(real)).copy()
    mask[mask == 255] = 128
    Image.fromarray(mask).save(source / "masks" / "joint.png")
    (source / "masks" / "broken.png").write_text("not a mask")
    [stats] = mask_stats.main(["--source", str(source), "--histogram",
                               str(tmp_path / "h.png")])
    assert (stats.masks, len(stats.measured), stats.no_crack) == (3, 1, 1)
    assert len(stats.unreadable) == 1
    assert stats.unreadable[0].startswith(str(source / "masks" / "broken.png"))
    assert "not an image" in stats.unreadable[0]
    assert f"unreadable: {source / 'masks' / 'broken.png'}" in capsys.readouterr().out


def test_a_folder_without_masks_is_one_line_error(tmp_path: Path):
    with pytest.raises(SystemExit, match="no masks/ folder"):
        mask_stats.main(["--source", str(tmp_path)])
