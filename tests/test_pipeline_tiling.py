"""Tile plans: full-size tiles that cover the whole photo, boxes in original pixels, and a
decoded survey photo streamed as tiles without holding them all."""
from __future__ import annotations

import hashlib
import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from apache_beam.pvalue import TaggedOutput
from PIL import Image

from pipeline.records import ImageInfo, SourceImage, TileKey
from crackscan.tiles import TilingError, default_stride, plan_tiles
from pipeline.tiling import DecodeAndTileFn

TILE = 227
STRIDE = default_stride(TILE)
LIMIT = 120_000_000


def boxes(width: int, height: int, tile: int = TILE, stride: int = STRIDE) -> list[tuple]:
    plan = plan_tiles(width, height, tile, stride, LIMIT)
    canvas = np.zeros((plan.canvas_height, plan.canvas_width, 3), dtype=np.uint8)
    tiles = list(plan.tiles(canvas))
    assert [index for index, _, _ in tiles] == list(range(plan.count))
    assert all(pixels.shape == (tile, tile, 3) for _, _, pixels in tiles)
    return [box for _, box, _ in tiles]


def assert_covers(width: int, height: int, tile_boxes: list[tuple]) -> None:
    covered = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in tile_boxes:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_default_stride_overlaps_by_a_quarter_tile():
    assert STRIDE == 170


def test_a_tile_sized_image_is_one_tile_without_resizing():
    plan = plan_tiles(TILE, TILE, TILE, STRIDE, LIMIT)
    assert (plan.canvas_width, plan.canvas_height, plan.count) == (TILE, TILE, 1)
    assert boxes(TILE, TILE) == [(0, 0, TILE, TILE)]


def test_a_small_image_is_scored_whole_resized_to_the_tile():
    plan = plan_tiles(100, 150, TILE, STRIDE, LIMIT)
    assert (plan.canvas_width, plan.canvas_height) == (TILE, TILE)
    assert boxes(100, 150) == [(0, 0, 100, 150)]


def test_an_image_up_to_an_eighth_larger_than_a_tile_is_one_tile_not_four():
    # The lab patches are 227 px; at 224 px tiles they would be four tiles 3 px apart.
    plan = plan_tiles(227, 227, 224, default_stride(224), LIMIT)
    assert (plan.canvas_width, plan.canvas_height, plan.count) == (224, 224, 1)
    assert boxes(227, 227, 224, default_stride(224)) == [(0, 0, 227, 227)]
    assert plan_tiles(252, 240, 224, default_stride(224), LIMIT).count == 1
    assert plan_tiles(253, 220, 224, default_stride(224), LIMIT).count == 2
    assert plan_tiles(256, 256, 224, default_stride(224), LIMIT).count == 4


def test_grid_ends_on_the_image_edge_with_full_size_tiles():
    tile_boxes = boxes(448, 448)
    assert len(tile_boxes) == 9
    assert sorted({box[0] for box in tile_boxes}) == [0, 110, 221]
    assert_covers(448, 448, tile_boxes)


def test_an_image_larger_in_one_dimension_is_scaled_up_then_tiled():
    plan = plan_tiles(100, 1000, TILE, STRIDE, LIMIT)
    assert (plan.canvas_width, plan.canvas_height) == (TILE, 2270)
    tile_boxes = boxes(100, 1000)
    assert len(tile_boxes) == len(plan.ys) == 14
    assert all(box[0] == 0 and box[2] == 100 for box in tile_boxes)
    assert_covers(100, 1000, tile_boxes)


def test_survey_sized_photo_grid():
    tile_boxes = boxes(4800, 6000)
    assert len(tile_boxes) == 28 * 35
    assert all(x1 - x0 == TILE and y1 - y0 == TILE for x0, y0, x1, y1 in tile_boxes)
    assert tile_boxes[-1] == (4800 - TILE, 6000 - TILE, 4800, 6000)
    assert_covers(4800, 6000, tile_boxes)


def test_stride_equal_to_tile_leaves_no_overlap_and_no_gap():
    tile_boxes = boxes(1000, 500, tile=250, stride=250)
    assert len(tile_boxes) == 4 * 2
    assert_covers(1000, 500, tile_boxes)


def test_a_sliver_that_would_scale_past_the_pixel_limit_is_refused():
    with pytest.raises(TilingError, match="too narrow to tile"):
        plan_tiles(1, 100_000, TILE, STRIDE, LIMIT)


@pytest.mark.shared("a 4800x6000 survey photo (../shared/data/survey/crack/CRACK500_*.jpg, not "
                    "checked in: 3 MB)")
def test_survey_photo_streams_tiles_without_holding_them_all(shared_dir: Path):
    """Decoded photo (86 MB) plus one tile at a time; all 980 tiles at once would be 151 MB.

    The peak is measured from the first output on, i.e. while tiles stream: decoding itself
    is ``crackscan.decode``'s business.
    """
    path = shared_dir / "data" / "survey" / "crack" / "CRACK500_20160328_153612_1281_1081.jpg"
    data = path.read_bytes()
    image = SourceImage(str(path), hashlib.sha256(data).hexdigest(), data)
    decoded_bytes = 4800 * 6000 * 3
    fn = DecodeAndTileFn(TILE, STRIDE, LIMIT)

    tracemalloc.start()
    try:
        outputs = fn.process(image)
        first = next(outputs)
        tracemalloc.reset_peak()
        count = 0
        for key, pixels in outputs:
            assert isinstance(key, TileKey) and pixels.shape == (TILE, TILE, 3)
            assert key.tiles == 980 and key.tile == count
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert isinstance(first, TaggedOutput) and first.value == ImageInfo(
        image.uri, image.sha256, 4800, 6000, 980)
    assert count == 980
    assert peak < decoded_bytes + 20 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"


def test_an_image_of_one_tile_sends_its_info_with_the_tile_and_of_more_before_them():
    def encoded(width: int, height: int) -> SourceImage:
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (90, 90, 90)).save(buffer, format="JPEG")
        data = buffer.getvalue()
        return SourceImage(f"{width}x{height}.jpg", hashlib.sha256(data).hexdigest(), data)

    fn = DecodeAndTileFn(TILE, STRIDE, LIMIT)
    single = encoded(240, 200)
    (key, pixels), = fn.process(single)
    assert key.info == ImageInfo(single.uri, single.sha256, 240, 200, 1)
    assert (key.tile, key.tiles, key.box, pixels.shape) == (0, 1, (0, 0, 240, 200),
                                                              (TILE, TILE, 3))
    info, *tiles = fn.process(encoded(454, 227))
    assert isinstance(info, TaggedOutput) and info.tag == "infos" and info.value.tiles == 3
    assert [key.tile for key, _ in tiles] == [0, 1, 2]
    assert all(key.info is None for key, _ in tiles)


def test_decode_failure_is_one_error_and_no_tiles():
    broken = io.BytesIO()
    Image.new("RGB", (300, 300), (10, 20, 30)).save(broken, format="JPEG")
    data = broken.getvalue()[:200]
    outputs = list(DecodeAndTileFn(TILE, STRIDE, LIMIT).process(
        SourceImage("broken.jpg", hashlib.sha256(data).hexdigest(), data)))
    assert len(outputs) == 1 and outputs[0].tag == "errors"
    assert outputs[0].value["stage"] == "decode"


def test_a_lab_patch_scored_whole_gets_the_pixels_training_resized_it_to(real_data: Path):
    """The 227 px lab patches are shrunk into one 224 px tile; training shrinks them with
    tf.image.resize (bilinear, no antialiasing). Pillow's bilinear antialiases and lands up
    to 3 grey levels away; the scorer's canvas must stay within about one, a quarter on
    average."""
    from training import input_pipeline

    patches = sorted((real_data / "data" / "concrete").glob("*/*.jpg"))[::12]
    assert len(patches) >= 10
    worst, pillow_worst, mean = 0.0, 0.0, []
    for path in patches:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        plan = plan_tiles(rgb.shape[1], rgb.shape[0], 224, default_stride(224), LIMIT)
        assert plan.count == 1
        trained = input_pipeline.resize(rgb, 224).numpy()
        scored = plan.canvas(rgb).astype(np.float32)
        pillow = np.asarray(Image.fromarray(rgb).resize((224, 224), Image.BILINEAR))
        worst = max(worst, float(np.abs(scored - trained).max()))
        pillow_worst = max(pillow_worst, float(np.abs(pillow - trained).max()))
        mean.append(float(np.abs(scored - trained).mean()))
    assert worst < 1.5 and np.mean(mean) < 0.3, (worst, np.mean(mean))
    assert pillow_worst > 1.5  # the check can tell the two resamplings apart


def test_a_narrow_image_is_stretched_bilinearly_and_its_mask_keeps_its_classes():
    import tensorflow as tf

    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (300, 60, 3), dtype=np.uint8)
    mask = rng.choice(np.array([0, 128, 255], dtype=np.uint8), (300, 60))
    plan = plan_tiles(60, 300, 224, default_stride(224), LIMIT)
    size = (plan.canvas_height, plan.canvas_width)
    assert size == (1120, 224)
    trained = tf.image.resize(rgb, size, method="bilinear", antialias=False).numpy()
    assert np.abs(plan.canvas(rgb).astype(np.float32) - trained).max() < 1.5
    stretched = plan.canvas(mask, mask=True)
    assert stretched.shape == size and set(np.unique(stretched)) == {0, 128, 255}
    assert np.array_equal(stretched, np.asarray(Image.fromarray(mask).resize(
        size[::-1], Image.NEAREST)))
