"""The jointed-intact evaluation set: intact surfaces whose straight joints read as cracks,
beside cracked photos of the same kinds, none of them seen in training.

``python -m training.jointed_set build --data DATA --survey ../shared/data/survey --output SET``
``python -m training.jointed_set evaluate --model MODEL_DIR --set SET``

A bridge survey is full of joints (formwork panels, brick piers, paved approaches), and the
test split barely holds any: a model can meet its bar there and still flag every brick
wall. Each kind is cut from photos the data set put in its test split, or from outside the
training sources altogether, so the set is kept apart by photo:

- ``formwork``: uav75's intact test windows (board-formed concrete, planking joints marked
  in its masks) and its cracked test windows;
- ``brick``: from each masonry-dais test photo, its clear crop (the largest square no
  crack pixel comes near, scaled up to a tile: the brick around a crack, without it; see
  :mod:`training.windows`), and the cracked test windows of those photos. A data set built
  with ``--clear-crops`` holds the same crops, so where it does these are its test crops;
- ``unseen walls``: ``survey/no_crack`` (intact concrete walls, boards, panels, tiles, from
  crack sets the model never saw) and ``survey/crack`` at 448 px;
- ``drawn joints``: the other sources' test windows with joints drawn in
  (:class:`training.joints.RandomJoints`, grids and bonds, a fixed seed), intact and
  cracked. Training draws the same kind of joints, so this kind is the optimistic one.

Images are written as class folders (``SET/<kind>/{Negative,Positive}/``), scored as whole
photos with the model's own tiling, threshold and photo rule.
"""
from __future__ import annotations

import argparse
import json
import logging
import posixpath
import sys
from collections import defaultdict
from typing import Iterator

import numpy as np

from crackscan import cli, decode, sources
from crackscan.cascade import crack_probabilities
from crackscan.labels import CLASS_NAMES, NEGATIVE, POSITIVE
from crackscan.model_card import ModelCard, join
from crackscan.tflite_model import TFLiteClassifier
from crackscan.tiles import default_stride, plan_tiles
from training import windows

KINDS = ("formwork", "brick", "unseen walls", "drawn joints")
DRAWN_PER_CLASS = 60  # windows per source and class for the drawn joints
DRAWN_SEED = 2027
# Photos of a wall, not whole survey photos: the shared survey's 20-megapixel pavements
# would count as one photo each while costing more than the rest of the set together.
MAX_SURVEY_SIDE = 1000
log = logging.getLogger("crackscan.jointed_set")


def _write(path: str, data: bytes) -> None:
    import tensorflow as tf  # gfile: the set may live on GCS like the data set

    tf.io.gfile.makedirs(posixpath.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)


def test_windows(data_dir: str, tile_size: int = 224) -> Iterator[dict]:
    """The labelled test windows of a data set, decoded, with their source and photo."""
    from training import input_pipeline  # TensorFlow only where the set is built

    for images, labels, meta in input_pipeline.dataset(data_dir, "test", tile_size, 64,
                                                       with_meta=True).as_numpy_iterator():
        for index, label in enumerate(labels):
            yield {"pixels": images[index], "label": int(label),
                   "source": meta["source"][index].decode(),
                   "photo": sources.file_path(meta["uri"][index].decode())}


def brick_crop(image_uri: str, mask_uri: str, tile_size: int) -> np.ndarray | None:
    """The photo's clear crop, cut as the data set cuts it (:func:`windows.clear_crop`)."""
    rgb = decode.decode_rgb(sources.read_file(image_uri))
    height, width = rgb.shape[:2]
    mask = windows.decode_mask(sources.read_file(mask_uri), (width, height),
                               decode.DEFAULT_MAX_PIXELS)
    plan = plan_tiles(width, height, tile_size, default_stride(tile_size),
                      decode.DEFAULT_MAX_PIXELS)
    crop = windows.clear_crop(plan, rgb, mask, 0)
    return None if crop is None else crop.pixels


def _mask_uri(photo_uri: str) -> str:
    folder, name = posixpath.split(photo_uri)
    return posixpath.join(posixpath.dirname(folder), "masks",
                          posixpath.splitext(name)[0] + ".png")


def build(data_dir: str, survey: str | None, output: str, tile_size: int = 224) -> dict:
    """Writes the set and its ``manifest.json`` (counts per kind and class, and where each
    kind came from); returns the manifest."""
    from training.joints import RandomJoints

    written: dict[str, dict[str, int]] = defaultdict(lambda: {"Negative": 0, "Positive": 0})

    def write(kind: str, label: int, name: str, pixels: np.ndarray) -> None:
        path = join(output, f"{kind}/{CLASS_NAMES[label]}/{name}.png")
        _write(path, windows.encode_png(pixels.astype(np.uint8)))
        written[kind][CLASS_NAMES[label]] += 1

    drawn: dict[tuple[str, int], list[np.ndarray]] = defaultdict(list)
    brick_photos: set[str] = set()
    with_intact: set[str] = set()
    for number, window in enumerate(test_windows(data_dir, tile_size)):
        source, label = window["source"], window["label"]
        if source == "uav75":
            write("formwork", label, f"uav75-{number:05d}", window["pixels"])
        elif source == "masonry-dais":
            write("brick", label, f"masonry-{number:05d}", window["pixels"])
            brick_photos.add(window["photo"])
            if label == NEGATIVE:
                with_intact.add(window["photo"])
        elif len(drawn[(source, label)]) < DRAWN_PER_CLASS:
            drawn[(source, label)].append(window["pixels"])
    for number, photo in enumerate(sorted(brick_photos - with_intact)):
        crop = brick_crop(photo, _mask_uri(photo), tile_size)
        if crop is not None:
            write("brick", NEGATIVE, f"masonry-clear-{number:04d}", crop)
    joints = RandomJoints(1.0, seed=DRAWN_SEED)
    for (source, label), batch in sorted(drawn.items()):
        jointed = np.asarray(joints(np.stack(batch).astype(np.float32), training=True))
        for number, pixels in enumerate(jointed):
            write("drawn joints", label, f"{source}-{number:03d}", np.round(pixels))
    skipped = []
    if survey:
        for folder, label in (("no_crack", NEGATIVE), ("crack", POSITIVE)):
            for uri in sources.expand(join(survey, folder + "/")):
                try:
                    pixels = decode.decode_rgb(sources.read_file(uri))
                except decode.DecodeError as exc:
                    log.warning("%s: left out of the set: %s", uri, exc)
                    skipped.append({"uri": uri, "error": str(exc)})
                    continue
                if max(pixels.shape[:2]) <= MAX_SURVEY_SIDE:
                    write("unseen walls", label, posixpath.splitext(
                        posixpath.basename(uri))[0], pixels)
                else:
                    skipped.append({"uri": uri, "error": f"{pixels.shape[1]}x"
                                    f"{pixels.shape[0]}: larger than {MAX_SURVEY_SIDE} px"})
    manifest = {"kinds": {kind: dict(written[kind]) for kind in KINDS if kind in written},
                "skipped": skipped, "data": data_dir, "survey": survey,
                "drawn_seed": DRAWN_SEED}
    _write(join(output, "manifest.json"), json.dumps(manifest, indent=2).encode())
    return manifest


def photo_probabilities(card: ModelCard, classifier: TFLiteClassifier,
                        images: list[np.ndarray]) -> np.ndarray:
    """Each image's photo probability under the model's card: tiled as the scorer tiles,
    then reduced by the card's photo rule."""
    result = []
    for pixels in images:
        height, width = pixels.shape[:2]
        plan = plan_tiles(width, height, card.tile_size, default_stride(card.tile_size),
                          max_pixels=width * height * 4)
        tiles = [tile for _, _, tile in plan.tiles(plan.canvas(pixels))]
        tile_probabilities, _ = crack_probabilities(classifier.predict, np.stack(tiles),
                                                    card.positive_index, card.cascade)
        result.append(card.photo_probability(tile_probabilities))
    return np.array(result)


def evaluate(model_dir: str, set_dir: str) -> dict[str, dict]:
    """Per kind the set's manifest lists: intact photos flagged and cracked photos found,
    at the card's photo threshold."""
    kinds = json.loads(sources.read_file(join(set_dir, "manifest.json")))["kinds"]
    card = ModelCard.read(model_dir)
    if card.tflite_uri is None:
        raise ValueError(f"{model_dir}: the card lists no LiteRT file; add one with "
                         f"crackscan-export-tflite --model {model_dir}")
    classifier = TFLiteClassifier(sources.read_file(card.tflite_uri), threads=2)
    figures = {}
    for kind, counts in kinds.items():
        result = {}
        for label in (NEGATIVE, POSITIVE):
            if not counts.get(CLASS_NAMES[label]):
                result[label] = (0, 0)
                continue
            uris = sources.expand(join(set_dir, f"{kind}/{CLASS_NAMES[label]}/"))
            images = [decode.decode_rgb(sources.read_file(uri)) for uri in uris]
            probabilities = photo_probabilities(card, classifier, images)
            result[label] = (int((probabilities >= card.photo_cutoff).sum()), len(images))
        (flagged, intact), (found, cracked) = result[NEGATIVE], result[POSITIVE]
        figures[kind] = {"intact": intact, "flagged": flagged,
                         "false_alarm_rate": flagged / intact if intact else None,
                         "cracked": cracked, "found": found,
                         "recall": found / cracked if cracked else None}
    return figures


def table(figures: dict[str, dict]) -> str:
    lines = ["| kind | intact flagged | cracked found |", "|---|---|---|"]
    for kind, f in figures.items():
        lines.append(f"| {kind} | {f['flagged']} of {f['intact']} | "
                     f"{f['found']} of {f['cracked']} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = cli.command_parser("training.jointed_set", __doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="cut the set from a data set's test split")
    b.add_argument("--data", required=True, help="folder written by training.build_dataset")
    b.add_argument("--survey", default=None,
                   help="folder with crack/ and no_crack/ photos from sources outside "
                        "training (the shared survey); leaves out the unseen walls if absent")
    b.add_argument("--output", required=True, help="folder for the set")
    e = commands.add_parser("evaluate", help="false alarms and recall per kind")
    e.add_argument("--model", required=True, help="exported model folder (model_card.json)")
    e.add_argument("--set", required=True, help="folder written by the build command")
    e.add_argument("--json", default=None, help="also write the figures to this file")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse_args(parser(), argv)
    with cli.one_line_errors("training.jointed_set", OSError, ValueError):
        if args.command == "build":
            manifest = build(args.data, args.survey, args.output)
            print(json.dumps(manifest["kinds"], indent=2))
            return manifest
        figures = evaluate(args.model, args.set)
        print(table(figures))
        if args.json:
            _write(args.json, json.dumps(figures, indent=2).encode())
        return figures


if __name__ == "__main__":
    main(sys.argv[1:])
