"""Train, evaluate and export the crack-mask model: ``crackscan-train-masks``.

    python -m training.train_masks --data runs/field-data-v2 --output runs/masks-v1 \\
        --weights ../shared/weights/mobilenet_v2_1.0_no_top.weights.h5

From the mask sources of a data set built by ``training.build_dataset``: its train windows
(per source, up to ``--cracked`` cracked and ``--intact`` intact ones) train the decoder on
the frozen encoder's cached features (:mod:`training.mask_model`, :mod:`training.mask_features`);
a sample of its validation windows stops training. Then the model is exported to LiteRT
(checked against Keras) and every whole validation and test photo of those sources is scored
with the exported file: the pixel threshold is the one with the best mean per-source F1 on
validation, and the figures at it (:mod:`training.mask_eval`) go to ``mask_metrics.json``,
the card section ``mask_card.json`` and ``plots/``. ``--attach-to MODEL_DIR`` also puts the
model beside a classifier (:mod:`training.mask_export`).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import time

import keras
import numpy as np

from crackscan import cli, model_card, verbosity
from training import (mask_data, mask_eval, mask_export, mask_features, mask_model,
                      mask_plots)
from training.export_tflite import predict as litert_predict
from training.input_pipeline import DataError, read_manifest
from training.train import command_line

log = logging.getLogger("crackscan.train_masks")
MODULE = "training.train_masks"
BAR_F1 = 0.6
CHECK_WINDOWS = 32


class TimeLimit(keras.callbacks.Callback):
    """Stops training after the epoch that crosses ``minutes`` of training: a run on a
    shared machine must end when its slot does, with its best epoch kept."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.deadline = time.monotonic() + minutes * 60

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.monotonic() > self.deadline:
            log.info("time limit reached after epoch %d: training stops", epoch + 1)
            self.model.stop_training = True


def train_decoder(args: argparse.Namespace, photos: list[mask_data.MaskPhoto],
                  tile_size: int, stride: int
                  ) -> tuple[keras.Model, keras.Model, dict, np.ndarray]:
    """The trained encoder and decoder, the training history and a few validation windows
    (to check the export on)."""
    picked = {split: mask_data.sample_windows(
        [p for p in photos if p.split == split], cracked, intact, args.seed)
        for split, cracked, intact in (("train", args.cracked, args.intact),
                                       ("val", args.val_cracked, args.val_intact))}
    counts = {split: {source: len(windows) for source, windows in chosen.items()}
              for split, chosen in picked.items()}
    log.info("windows: %s", json.dumps(counts))
    arrays = {split: mask_data.window_arrays([w for ws in chosen.values() for w in ws],
                                             tile_size, stride)
              for split, chosen in picked.items()}
    encoder = mask_model.encoder(tile_size, args.weights)
    cached = {}
    for split, (images, cracks) in arrays.items():
        log.info("encoding %d %s windows", len(images), split)
        cached[split] = mask_features.CachedWindows(
            images, mask_features.encode(encoder, images), cracks, args.batch_size,
            args.seed if split == "train" else None)
    decoder = mask_model.decoder(tile_size)
    mask_model.compile_decoder(decoder, args.learning_rate)
    best = os.path.join(args.output, "checkpoints", "decoder.weights.h5")
    os.makedirs(os.path.dirname(best), exist_ok=True)
    history = decoder.fit(
        cached["train"], validation_data=cached["val"], epochs=args.epochs, verbose=2,
        callbacks=[keras.callbacks.ModelCheckpoint(best, save_best_only=True,
                                                   save_weights_only=True),
                   keras.callbacks.EarlyStopping(patience=args.patience),
                   keras.callbacks.CSVLogger(os.path.join(args.output, "training_log.csv")),
                   TimeLimit(args.max_train_minutes)])
    decoder.load_weights(best)
    report = {"windows": counts, "history": {k: [float(v) for v in values]
                                             for k, values in history.history.items()},
              "epochs_run": len(history.history["loss"]),
              "best_epoch": int(np.argmin(history.history["val_loss"])) + 1}
    return encoder, decoder, report, arrays["val"][0][:CHECK_WINDOWS]


def score_photos(content: bytes, photos: list[mask_data.MaskPhoto], tile_size: int,
                 stride: int, split: str) -> tuple[list[mask_eval.ScoredPhoto],
                                                   dict[str, np.ndarray]]:
    """Every photo of ``split`` scored whole by the exported file, and its pixels."""
    chosen = [p for p in photos if p.split == split]
    scored, images = [], {}

    def predict(tiles: np.ndarray) -> np.ndarray:
        return litert_predict(content, tiles.astype(np.float32), batch_size=16)

    for index, photo in enumerate(chosen, 1):
        pixels = mask_data.read_photo(photo, tile_size, stride)
        probability = mask_eval.photo_probability(predict, pixels)
        scored.append(mask_eval.ScoredPhoto(photo.source, photo.uri, probability,
                                            pixels.crack))
        images[photo.uri] = pixels.rgb
        if index % 100 == 0 or index == len(chosen):
            log.info("scored %d of %d %s photos", index, len(chosen), split)
    return scored, images


def limited(photos: list[mask_data.MaskPhoto], per_source: int | None
            ) -> list[mask_data.MaskPhoto]:
    """The training photos, and up to ``per_source`` validation and test photos a source."""
    if per_source is None:
        return photos
    kept, seen = [], {}
    for photo in photos:
        key = (photo.source, photo.split)
        if photo.split == "train" or seen.get(key, 0) < per_source:
            seen[key] = seen.get(key, 0) + 1
            kept.append(photo)
    return kept


def section(args: argparse.Namespace, manifest: dict, files: dict, threshold: float,
            test: dict, val: dict, sources: list[str], argv: list[str] | None) -> dict:
    """The card's ``mask_model`` section."""
    licences = {s["name"]: s.get("licence") for s in manifest["sources"]}
    return files | {
        "threshold": threshold,
        "threshold_rule": "the pixel threshold (0.05 to 0.95 in steps of 0.05) with the best "
                          "F1 averaged over sources on whole validation photos",
        "tolerance_px": mask_eval.TOLERANCE_PX,
        "backbone": mask_model.BACKBONE_NAME,
        "weights": args.weights,
        "skips": [name for name, _ in mask_model.SKIPS],
        "training_sources": [{"name": name, "licence": licences.get(name)}
                             for name in sources],
        "metrics_by_source": test,
        "val_metrics_by_source": val,
        "data": {"path": args.data, "command": manifest.get("command"),
                 "source_fingerprint": manifest.get("source_fingerprint")},
        "reproduce": [manifest["command"], command_line(MODULE, argv)]
        if manifest.get("command") else [command_line(MODULE, argv)],
        "versions": {name: importlib.metadata.version(name)
                     for name in ("keras", "tensorflow-cpu", "ai-edge-litert")
                     if _installed(name)},
    }


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def run(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    keras.utils.set_random_seed(args.seed)
    started = time.monotonic()
    os.makedirs(os.path.join(args.output, "plots"), exist_ok=True)
    manifest = read_manifest(args.data)
    tile_size = int(manifest["options"]["tile_size"])
    stride = int(manifest["options"]["tile_stride"])
    photos = limited(mask_data.dataset_photos(args.data, args.source), args.eval_photos)
    sources = sorted({p.source for p in photos})
    encoder, decoder, report, check = train_decoder(args, photos, tile_size, stride)
    trained = time.monotonic()
    model = mask_model.full_model(encoder, decoder, tile_size)
    model.save(os.path.join(args.output, mask_export.MASK_KERAS_FILE))
    files = mask_export.export(model, args.output, tile_size, check)
    with open(os.path.join(args.output, files["file"]), "rb") as handle:
        content = handle.read()
    val, _ = score_photos(content, photos, tile_size, stride, "val")
    threshold = mask_eval.choose_threshold(mask_eval.counts_by_source(val))
    val_figures = mask_eval.figures(val, threshold)
    del val
    test, images = score_photos(content, photos, tile_size, stride, "test")
    test_figures = mask_eval.figures(test, threshold)
    plots = [mask_plots.by_source(test_figures, val_figures,
                                  os.path.join(args.output, "plots", "mask_by_source.png"),
                                  BAR_F1),
             mask_plots.overlays(test, images, threshold,
                                 os.path.join(args.output, "plots", "mask_examples.png"))]
    card = section(args, manifest, files, threshold, test_figures, val_figures, sources, argv)
    mask_export.write_section(args.output, card)
    report |= {"threshold": threshold, "test": test_figures, "val": val_figures,
               "train_seconds": round(trained - started, 1),
               "total_seconds": round(time.monotonic() - started, 1), "plots": plots,
               "options": vars(args)}
    with open(os.path.join(args.output, "mask_metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)
    for target in args.attach_to:
        mask_export.attach(args.output, target)
        log.info("attached to %s", target)
    return report


def summary(report: dict) -> str:
    lines = [f"threshold {report['threshold']:.2f}; test (val) pixel F1 at 2 px tolerance:"]
    for source, figures in sorted(report["test"].items()):
        val = report["val"].get(source, {})
        width = figures["width_error_px"]
        lines.append(f"  {source}: precision {figures['precision']:.3f}, recall "
                     f"{figures['recall']:.3f}, F1 {figures['f1']:.3f} ({val.get('f1', 0):.3f}),"
                     f" width error {'-' if width is None else f'{width:.2f} px'}, "
                     f"{figures['photos']} photos")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = cli.command_parser(MODULE, __doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a folder written by crackscan-build-dataset")
    p.add_argument("--output", required=True, help="the mask model folder to write")
    p.add_argument("--weights", required=True,
                   help="a local MobileNetV2 .weights.h5 without its top, 'imagenet' "
                        "(downloads) or 'none' (random: for tests only)")
    p.add_argument("--source", action="append", metavar="NAME",
                   help="a mask source of the data set to use; repeatable (default: all)")
    p.add_argument("--cracked", type=int, default=500,
                   help="cracked train windows per source, at most")
    p.add_argument("--intact", type=int, default=200,
                   help="intact train windows per source, at most")
    p.add_argument("--val-cracked", type=int, default=60,
                   help="cracked validation windows per source for the validation loss")
    p.add_argument("--val-intact", type=int, default=20,
                   help="intact validation windows per source for the validation loss")
    p.add_argument("--eval-photos", type=int, default=None,
                   help="validation and test photos per source scored whole, at most "
                        "(default: all)")
    p.add_argument("--epochs", type=int, default=12, help="decoder epochs, at most")
    p.add_argument("--patience", type=int, default=3,
                   help="epochs without a lower validation loss before training stops")
    p.add_argument("--max-train-minutes", type=float, default=float("inf"),
                   help="stop training after the epoch that crosses this many minutes")
    p.add_argument("--batch-size", type=int, default=16, help="windows per step")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--seed", type=int, default=1337, help="seed of sampling and weights")
    p.add_argument("--attach-to", action="append", default=[], metavar="MODEL_DIR",
                   help="also attach the model to this classifier folder; repeatable")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse_args(parser(), argv)
    verbosity.configure(argv)
    with cli.one_line_errors(MODULE, DataError, mask_export.MaskExportError,
                             model_card.ModelCardError, FileNotFoundError):
        report = run(args, argv)
    print(summary(report))
    print(f"{args.output}: {mask_export.MASK_FILE}, {mask_export.MASK_CARD_FILE}, "
          f"mask_metrics.json, plots/")
    return report


console = cli.console_script(main)


if __name__ == "__main__":
    main()
