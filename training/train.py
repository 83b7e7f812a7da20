"""Train, evaluate and export the crack classifier.

``python -m training.train --data DIR --output MODEL_DIR [--weights imagenet|none|PATH]``

Stage 1 trains the head on a frozen ImageNet backbone. Stage 2 unfreezes the top of the
backbone (batch norm stays frozen) and fine-tunes at a much lower learning rate; it is kept
only if it lowers the validation loss, so fine-tuning can never leave the model worse than
stage 1 left it. The decision threshold is chosen on validation, metrics come from test.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import posixpath
import shlex
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from crackscan import cascade as cascade_lib
from crackscan import cli, model_card, verbosity
from crackscan.labels import POSITIVE
from training import (evaluate, export, export_tflite, input_pipeline, int8_export,
                      model as model_lib, plots, teachers)

log = logging.getLogger("crackscan.train")


def callbacks(output: str, stage: str, patience: int,
              weight_average: bool = False) -> list[keras.callbacks.Callback]:
    """Early stopping, TensorBoard and the best checkpoint; with a weight average, each
    epoch's validation, checkpoint and early-stopping choice see the averaged weights
    (SwapEMAWeights comes first so the others find them in the model)."""
    swap = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if weight_average else []
    return swap + [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                      restore_best_weights=True, verbose=1),
        keras.callbacks.TensorBoard(log_dir=posixpath.join(output, "logs", stage)),
        keras.callbacks.ModelCheckpoint(
            posixpath.join(output, "checkpoints", f"{stage}-best.weights.h5"),
            monitor="val_loss", save_best_only=True, save_weights_only=True),
    ]


def fit_stage(model: keras.Model, stage: str, train_ds: tf.data.Dataset,
              val_ds: tf.data.Dataset, args: argparse.Namespace, epochs: int,
              learning_rate: float, steps_per_epoch: int) -> dict:
    """One stage: compile, fit with early stopping, and its best validation figures."""
    model_lib.compile_model(model, learning_rate, args.ema_momentum, bool(args.teacher))
    started = time.monotonic()
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                        steps_per_epoch=steps_per_epoch,
                        callbacks=callbacks(args.output, stage, args.patience,
                                            args.ema_momentum is not None),
                        verbose=2)
    loss, accuracy = model.evaluate(val_ds, verbose=0)
    result = {"epochs_run": len(history.history["loss"]), "learning_rate": learning_rate,
              "val_loss": float(loss), "val_accuracy": float(accuracy),
              "seconds": round(time.monotonic() - started, 1),
              "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    log.info("%s: val_loss %.4f val_accuracy %.4f after %d epochs (%.0fs)", stage, loss,
             accuracy, result["epochs_run"], result["seconds"])
    return result


def write_test_summary(output: str, test_metrics: dict) -> None:
    """Test figures beside the stages' curves in TensorBoard."""
    with tf.summary.create_file_writer(posixpath.join(output, "logs", "test")).as_default():
        for name in ("accuracy", "precision", "recall", "false_alarm_rate", "f1", "roc_auc"):
            if test_metrics[name] is not None:
                tf.summary.scalar(f"test/{name}", test_metrics[name], step=0)


def save_plots(output: str, args: argparse.Namespace, stages: dict, test: evaluate.Predictions,
               test_metrics: dict, by_source: dict[str, dict], class_names: list[str],
               photo_rule: dict) -> list[str]:
    plot_dir = posixpath.join(output, "plots")
    curves = [(name, result["history"]) for name, result in stages.items() if "history" in result]
    paths = [plots.training_curves(curves, posixpath.join(plot_dir, "training_curves.png")),
             plots.confusion_matrix(test_metrics["confusion_matrix"]["rows_true_columns_predicted"],
                                    class_names, posixpath.join(plot_dir, "confusion_matrix.png")),
             plots.by_source(by_source, posixpath.join(plot_dir, "test_by_source.png")),
             plots.false_alarm_growth(
                 {rule: growth for rule, growth in
                  photo_rule["false_alarms_by_tile_count"].items() if rule != "how"},
                 posixpath.join(plot_dir, "false_alarms_by_tile_count.png"))]
    images, labels = next(iter(input_pipeline.dataset(
        args.data, "train", args.image_size, 16, training=True, seed=args.seed,
        joint_rate=args.joint_rate, joints_into=args.joints_into)))
    paths.append(plots.image_grid(images.numpy(), [class_names[i] for i in labels.numpy()],
                                  posixpath.join(plot_dir, "augmented_samples.png"),
                                  title="training inputs after augmentation"))
    errors = evaluate.worst_errors(test, test_metrics["threshold"])
    wanted, pixels = set(errors), {}
    batches = input_pipeline.dataset(args.data, "test", args.image_size, args.batch_size)
    for start, (batch, _) in zip(itertools.count(0, args.batch_size), batches):
        for index in wanted.intersection(range(start, start + len(batch))):
            pixels[index] = batch[index - start].numpy()
        if len(pixels) == len(wanted):
            break
    paths.append(plots.image_grid(
        np.array([pixels[i] for i in errors]),
        [f"{test.sources[i]}\n{class_names[test.labels[i]]}  p={test.probabilities[i]:.3f}"
         for i in errors],
        posixpath.join(plot_dir, "test_errors.png"),
        title=(f"the surest mistakes on test, per source (threshold "
               f"{test_metrics['threshold']:.3f})" if errors else "no mistakes on test")))
    return paths


def predict_whole(model: keras.Model, args: argparse.Namespace, split: str
                  ) -> tuple[evaluate.Predictions, evaluate.Predictions]:
    """Every window of a split's photos, and the labelled ones among them."""
    whole = evaluate.predict(model, input_pipeline.dataset(
        args.data, split, args.image_size, args.batch_size, with_meta=True,
        whole_photos=True))
    return whole, whole.subset(whole.labels >= 0)


def training_sources(manifest: dict, source_weights: dict[str, float]) -> list[dict]:
    """What the model learnt from, with each source's licence and sampling weight, for its
    card."""
    return [{"name": s["name"], "kind": s["kind"], "photos": s["photos"],
             "licence": s.get("licence") or "not stated; see the source's origin",
             "sampling_weight": source_weights.get(s["name"], 1.0),
             "examples": {split: manifest["counts_by_source"][split][s["name"]]
                          for split in ("train", "val", "test")}}
            for s in manifest["sources"]]


def reproduce_commands(manifest: dict, argv: list[str] | None,
                       teacher_dirs: list[str]) -> list[str]:
    """The commands that make this model from its sources: the data set's build, each
    teacher's own commands as its card lists them (a teacher is a model trained before the
    student, and may be a student itself), then this run's. Read when training starts, like
    the teachers' hashes, since a teacher's folder may be replaced while the student trains.
    """
    commands = [manifest.get("command")]
    for model_dir in teacher_dirs:
        made_by = model_card.read_card(model_dir).get("reproduce") or []
        if not made_by:
            log.warning("%s: its card lists no commands that made it; this model's card "
                        "names it by its file's sha256 only", model_dir)
        commands += [command for command in made_by if command not in commands]
    return commands + [command_line("training.train", argv)]


def command_line(module: str, argv: list[str] | None) -> str:
    """``python -m MODULE`` with this run's arguments, quoted for a shell, for a card."""
    own = argv if argv is not None else sys.argv[1:]
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in own)


def train(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    """Both stages, then :func:`evaluate_and_export`; returns the metrics report."""
    keras.utils.set_random_seed(args.seed)
    started = time.monotonic()
    manifest = input_pipeline.read_manifest(args.data)
    class_names = manifest["class_names"]
    tf.io.gfile.makedirs(args.output)
    source_weights = dict(args.source_weight)
    teacher, taught_by = (teachers.crack_probabilities(args.data, args.teacher,
                                                       views=args.teacher_views)
                          if args.teacher else (None, []))
    commands = reproduce_commands(manifest, argv, args.teacher)
    train_ds = input_pipeline.dataset(args.data, "train", args.image_size, args.batch_size,
                                      training=True, seed=args.seed,
                                      source_weights=source_weights, teacher=teacher,
                                      teacher_weight=args.teacher_weight,
                                      joint_rate=args.joint_rate,
                                      joints_into=args.joints_into)
    steps = args.steps_per_epoch or max(1, manifest["counts"]["train"]["total"]
                                        // args.batch_size)
    val_ds = input_pipeline.balanced_validation(args.data, "val", args.image_size,
                                                args.batch_size, source_weights,
                                                one_hot=bool(args.teacher))
    model, base = model_lib.build(args.image_size, args.weights, args.dropout,
                                  len(class_names))
    stages = {"stage1": fit_stage(model, "stage1", train_ds, val_ds, args, args.epochs,
                                  args.learning_rate, steps)}
    if args.fine_tune_epochs and args.weights != "none":
        stage1_weights = model.get_weights()
        unfrozen = model_lib.unfreeze_top(base, args.fine_tune_layers)
        log.info("stage2: %d backbone layers with weights unfrozen (batch norm frozen)",
                 unfrozen)
        stage2 = fit_stage(model, "stage2", train_ds, val_ds, args, args.fine_tune_epochs,
                           args.fine_tune_learning_rate, steps)
        stage2["unfrozen_layers"] = unfrozen
        stage2["kept"] = stage2["val_loss"] < stages["stage1"]["val_loss"]
        if not stage2["kept"]:
            log.warning("stage2 did not lower val_loss (%.4f >= %.4f): keeping stage 1",
                        stage2["val_loss"], stages["stage1"]["val_loss"])
            model.set_weights(stage1_weights)
        stages["stage2"] = stage2
    else:
        stages["stage2"] = {"skipped": "no pretrained backbone to fine-tune"
                            if args.weights == "none" else "--fine-tune-epochs 0"}
    if args.flip_average and not args.cascade:
        model = model_lib.with_flip_average(model, args.flip_average)
    return evaluate_and_export(model, args, commands, manifest, stages, started, taught_by)


def scored_splits(model: keras.Model, args: argparse.Namespace
                  ) -> tuple[dict[str, evaluate.Predictions], float, tuple[int, float],
                             dict | None, evaluate.Predictions]:
    """Whole validation and test photos as the exported model scores them, the threshold
    and the photo rule chosen on validation, the card's ``cascade`` (None without one), and
    the test photos as the exported file alone scores them (a cascade's first pass), which
    its export is checked against.

    A cascade's thresholds are chosen on the full flip average, the model it stands in
    for; its band then holds them (:func:`training.evaluate.choose_cascade_band`), and
    every figure is measured on what the cascade gives: the one-pass probability outside
    the band, the average inside it."""
    if not args.cascade:
        whole = {split: predict_whole(model, args, split)[0] for split in ("val", "test")}
        threshold = evaluate.choose_threshold(whole["val"].subset(whole["val"].labels >= 0))
        rule = evaluate.choose_photo_rule(evaluate.photo_cases(whole["val"]), threshold)
        return whole, threshold, rule, None, whole["test"]
    views = model_lib.with_views(model, args.flip_average)
    forms = {}
    for split in ("val", "test"):
        scored = predict_whole(views, args, split)[0]
        forms[split] = (scored.scored(scored.probabilities[:, 0]),
                        scored.scored(scored.probabilities.mean(axis=1)))
    one_pass, averaged = forms["val"]
    threshold = evaluate.choose_threshold(averaged.subset(averaged.labels >= 0))
    rule = evaluate.choose_photo_rule(evaluate.photo_cases(averaged), threshold)
    band = cascade_lib.Cascade(args.flip_average, *evaluate.choose_cascade_band(
        one_pass.probabilities, averaged.probabilities, (threshold, rule[1])))
    whole, rescored, unlike = {}, {}, {}
    for split, (one_pass, averaged) in forms.items():
        whole[split] = one_pass.scored(cascade_lib.combine(
            one_pass.probabilities, averaged.probabilities, band))
        rescored[split] = float(np.mean(band.unsure(one_pass.probabilities)))
        verdicts = [(probabilities >= threshold, probabilities >= rule[1])
                    for probabilities in (whole[split].probabilities, averaged.probabilities)]
        unlike[split] = {"tile_threshold": int(np.sum(verdicts[0][0] != verdicts[1][0])),
                         "photo_threshold": int(np.sum(verdicts[0][1] != verdicts[1][1])),
                         "of_tiles": len(one_pass.labels)}
    log.info("cascade: one pass, %s views for one-pass probabilities %.4f to %.4f: %.1f%% of "
             "test tiles re-scored, %s", args.flip_average, band.low, band.high,
             100 * rescored["test"], unlike["test"])
    return whole, threshold, rule, {
        "views": band.views, "low": band.low, "high": band.high,
        "rule": f"every tile is scored once; a tile whose crack probability lies from low to "
                f"high is scored in all its views ({model_lib.FLIP_AVERAGE_OUTPUT[band.views]}) "
                f"and gets their mean. The band holds the tile and photo thresholds, chosen "
                f"on the full average, and all but {evaluate.CASCADE_MISSES:.1%} of the "
                f"validation tiles the full average puts on each side of them",
        "rescored_share": rescored,
        "verdicts_unlike_full_average": unlike}, forms["test"][0]


def evaluate_and_export(model: keras.Model, args: argparse.Namespace,
                        commands: list[str], manifest: dict, stages: dict,
                        started: float, taught_by: list[dict]) -> dict:
    """Threshold and photo rule chosen on validation, test figures overall, per source and
    per photo, plots, then the checked exports and the card, written once; ``commands`` as
    :func:`reproduce_commands` gives them, ``taught_by`` names the teachers as
    :func:`training.teachers.crack_probabilities` read them."""
    class_names = manifest["class_names"]
    whole, threshold, (tiles_needed, photo_threshold), cascade, exported = scored_splits(
        model, args)
    val_whole, test_whole = whole["val"], whole["test"]
    val, test = (scored.subset(scored.labels >= 0) for scored in (val_whole, test_whole))
    test_metrics = evaluate.metrics(test, threshold)
    val_metrics = evaluate.metrics(val, threshold)
    by_source = {"test": evaluate.metrics_by_source(test, threshold),
                 "val": evaluate.metrics_by_source(val, threshold)}
    val_photos = evaluate.photo_cases(val_whole)
    test_photos = evaluate.photo_cases(test_whole)
    photo_rule = {
        "tiles_needed": tiles_needed,
        "photo_threshold": photo_threshold,
        "survey_tiles": evaluate.SURVEY_TILES,
        "rule": f"a photo is {class_names[POSITIVE]} when at least {tiles_needed} of "
                f"its tiles (all of them, if it has fewer) reach the photo threshold "
                f"{photo_threshold:.4f}; its crack_probability is its {tiles_needed}-th "
                f"highest tile probability",
        "chosen_by": f"on validation photos of {evaluate.SURVEY_TILES} tiles, made per "
                     f"source from its own tiles: among the rules keeping every source's "
                     f"false alarms within {evaluate.MAX_FALSE_ALARM_RATE:.0%}, the best "
                     f"recall averaged over sources (where none does, the lowest worst "
                     f"false-alarm rate); the photo threshold at or above the tile "
                     f"threshold; ties to the fewest tiles, then the lowest threshold",
        "val": evaluate.photo_metrics(val_photos, photo_threshold, tiles_needed),
        "test": evaluate.photo_metrics(test_photos, photo_threshold, tiles_needed),
        "survey_size": {
            split: evaluate.photo_metrics(evaluate.survey_size_cases(cases), photo_threshold,
                                          tiles_needed)
            for split, cases in (("val", val_photos), ("test", test_photos))},
        "false_alarms_by_tile_count": {
            "rule": evaluate.false_alarms_by_tile_count(test_photos, photo_threshold,
                                                        tiles_needed),
            "any_tile_at_the_tile_threshold": evaluate.false_alarms_by_tile_count(
                test_photos, threshold, 1),
            "how": "test split: each source's share of intact tiles over the threshold, "
                   "and the binomial chance that enough of n independent tiles are"},
    }
    log.info("photo rule: %d tile(s) at %.4f; test photos: recall %s, false alarms %s; at "
             "%d tiles: recall %s, false alarms %s", tiles_needed, photo_threshold,
             photo_rule["test"]["recall"], photo_rule["test"]["false_alarm_rate"],
             evaluate.SURVEY_TILES, photo_rule["survey_size"]["test"]["recall"],
             photo_rule["survey_size"]["test"]["false_alarm_rate"])
    write_test_summary(args.output, test_metrics)
    plot_paths = save_plots(args.output, args, stages, test, test_metrics, by_source["test"],
                            class_names, photo_rule)

    card = {
        "name": "crackscan-mobilenet-v2",
        "class_names": class_names,
        "positive_class": class_names[POSITIVE],
        "input_size": args.image_size,
        "tile_size": tile_size(manifest, args.image_size),
        "input": "float32 or uint8 RGB 0-255, shape (batch, height, width, 3), any size; "
                 "resized and scaled inside the model",
        "output": "softmax probabilities over class_names" + (
            ", " + model_lib.FLIP_AVERAGE_OUTPUT[args.flip_average]
            if args.flip_average and not cascade else ""),
        "flip_average": None if cascade else args.flip_average,
        "cascade": cascade,
        "ema_momentum": args.ema_momentum,
        "joint_rate": args.joint_rate,
        "joints_into": args.joints_into if args.joint_rate else None,
        "teachers": ({"models": taught_by,
                      "weight": args.teacher_weight,
                      "views": args.teacher_views,
                      "target": "label blended with the teachers' mean crack probability "
                                "on the unaugmented training window"}
                     if args.teacher else None),
        "threshold": threshold,
        "threshold_rule": "best accuracy balanced over sources and classes on the "
                          "validation split (mean of each source's recall and 1 - false-alarm "
                          "rate) among thresholds keeping every source's false alarms within "
                          f"{evaluate.MAX_FALSE_ALARM_RATE:.0%}, "
                          "ties towards 0.5",
        "photo_rule": photo_rule,
        "metrics": {"test": test_metrics, "val": val_metrics},
        "metrics_by_source": by_source,
        "weights": args.weights if args.weights in model_lib.WEIGHT_CHOICES
        else f"file:{os.path.basename(args.weights)}",
        "data": {"fingerprint": manifest["source_fingerprint"], "source": manifest["source"],
                 "counts": manifest["counts"], "window_rule": manifest["options"].get(
                     "window_rule"), "split_rule": manifest["options"]["split_rule"]},
        "training_sources": training_sources(manifest, dict(args.source_weight)),
        "reproduce": commands,
    }
    evaluated = dict(zip(exported.sha256, exported.probabilities))
    # Both exports must reproduce the evaluated probabilities on the same raw uint8 images.
    images, hashes = export.native_batch(args.data, "test", 64)
    positive = np.array([evaluated[h] for h in hashes])
    model_path = export.save_model(model, args.output)
    gap = export.verify(model_path, images, positive)
    if gap > 1e-4:
        raise RuntimeError(f"exported model disagrees with the evaluation by {gap:.2e}")
    card = export.describe(card, model_path)
    tile = card["tile_size"]
    if images.shape[1:3] == (tile, tile):
        lite_images, expected = images, np.stack([1 - positive, positive], axis=1)
    else:
        # The test split holds images of another size first (whole photos beside tiles):
        # LiteRT takes tiles only, so it is held to the verified Keras model on those
        # images resized to a tile.
        lite_images = input_pipeline.resize(images, tile).numpy()
        expected = np.asarray(model.predict_on_batch(lite_images))
    card = export_tflite.export(model, args.output, card, lite_images, expected)
    if args.int8:
        tflite_path = posixpath.join(args.output, card["tflite_file"])
        with tf.io.gfile.GFile(tflite_path, "rb") as handle:
            card = int8_export.export_int8(model, args.output, card, args.data, handle.read())
    model_card.write_card(args.output, card)
    report = {"test": test_metrics, "val": val_metrics, "by_source": by_source,
              "photo_rule": photo_rule, "stages": stages,
              "export_max_abs_diff": gap, "tflite_max_abs_diff": card["tflite_max_abs_diff"],
              "model_version": card["model_sha256"][:12],
              "data_fingerprint": manifest["source_fingerprint"],
              "wall_seconds": round(time.monotonic() - started, 1),
              "options": dict(vars(args)), "plots": plot_paths}
    with tf.io.gfile.GFile(posixpath.join(args.output, "metrics.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    with tf.io.gfile.GFile(posixpath.join(args.output, "test_predictions.json"), "w") as handle:
        json.dump([{"source": s, "photo": ph, "sha256": h, "label": int(y),
                    "crack_probability": float(p)}
                   for s, ph, h, y, p in zip(test.sources, test.photos, test.sha256,
                                             test.labels, test.probabilities)], handle)
    return report


def tile_size(manifest: dict, image_size: int) -> int:
    """The window side the data set was cut at, else the training patch side (the most
    common square image size): what scoring tiles must match."""
    if manifest.get("tile_size"):
        return int(manifest["tile_size"])
    for size in manifest.get("image_sizes", {}):
        width, height = (int(v) for v in size.split("x"))
        if width == height:
            return width
    return image_size


def source_weight(text: str) -> tuple[str, float]:
    """``NAME=W`` with W a positive number, for ``--source-weight``."""
    name, _, weight = text.partition("=")
    try:
        value = float(weight)
    except ValueError:
        value = 0.0
    if not name or not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=W with W a positive "
                                         f"number, e.g. uavcrack=2")
    return name, value


def ema_momentum(text: str) -> float:
    """A momentum strictly between 0 and 1, for ``--ema-momentum``."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a momentum between 0 and 1, "
                                         f"e.g. 0.99")
    return value


def share(text: str) -> float:
    """A share from 0 to 1, for ``--teacher-weight`` and ``--joint-rate``."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share from 0 to 1, e.g. 0.5")
    return value


def parser() -> argparse.ArgumentParser:
    p = cli.command_parser("training.train", __doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="folder written by training.build_dataset")
    p.add_argument("--output", required=True, help="model folder to write")
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (download Keras' weights), 'none' (from scratch) or a "
                        "local .weights.h5 of MobileNetV2 without its top (default: imagenet)")
    p.add_argument("--image-size", type=int, default=224,
                   help="side the model resizes its input to, inside the model (default: 224)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="examples per training step and per evaluation batch (default: 32)")
    p.add_argument("--epochs", type=int, default=10,
                   help="stage 1 epochs, at most: early stopping may end it (default: 10)")
    p.add_argument("--fine-tune-epochs", type=int, default=10,
                   help="stage 2 epochs, at most; 0 skips stage 2 (default: 10)")
    p.add_argument("--learning-rate", type=float, default=1e-3,
                   help="Adam's learning rate for stage 1, the head (default: 1e-3)")
    p.add_argument("--fine-tune-learning-rate", type=float, default=1e-5,
                   help="Adam's learning rate for stage 2, the unfrozen top (default: 1e-5)")
    p.add_argument("--fine-tune-layers", type=int, default=38,
                   help="top backbone layers unfrozen in stage 2, batch norm excluded "
                        "(default: 38 = blocks 13-16 + Conv_1)")
    p.add_argument("--patience", type=int, default=3,
                   help="epochs without a lower validation loss before a stage stops and "
                        "restores its best weights (default: 3)")
    p.add_argument("--dropout", type=float, default=0.2,
                   help="dropout rate before the classifier (default: 0.2)")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="training batches per epoch; batches are drawn balanced from an "
                        "endless stream (default: as many as the train split holds)")
    p.add_argument("--source-weight", action="append", default=[], type=source_weight,
                   metavar="NAME=W",
                   help="a source's share of each class in training batches and in the "
                        "validation loss, relative to 1 for the others; repeatable (default: "
                        "every source 1)")
    p.add_argument("--seed", type=int, default=1337,
                   help="seed of weights, sampling and augmentation (default: 1337)")
    p.add_argument("--ema-momentum", type=ema_momentum, default=None, metavar="M",
                   help="train with an exponential moving average of the weights (Adam's "
                        "use_ema; 0.99 averages over about the last 100 steps): validation, "
                        "checkpoints, early stopping and the exported model use the average "
                        "(default: the raw weights)")
    p.add_argument("--teacher", action="append", default=[], metavar="MODEL_DIR",
                   help="an exported model folder (its model.tflite) to distil: the training "
                        "targets blend each window's label with the teachers' mean crack "
                        "probability; repeatable (default: labels only)")
    p.add_argument("--teacher-weight", type=share, default=0.5, metavar="W",
                   help="share of each training target taken from the teachers, 0 to 1 "
                        "(default: 0.5)")
    p.add_argument("--teacher-views", type=int, choices=teachers.VIEWS, default=1,
                   help="orientations each teacher sees a window in: 1, or 8 (four quarter "
                        "turns of the window and of its mirror image, averaged; eight times "
                        "the teachers' time) (default: 1)")
    p.add_argument("--flip-average", choices=sorted(model_lib.FLIP_VIEWS), default=None,
                   help="export a model that scores each image and its left-right mirror "
                        "image (mirror), or also its upside-down image and its half turn "
                        "(flips), and averages them; the threshold and every figure are "
                        "measured on that average (two or four times the inference time "
                        "per tile; default: one pass)")
    p.add_argument("--cascade", action="store_true",
                   help="with --flip-average: export the one-pass model, and score a tile "
                        "in all the average's views only when its one-pass crack "
                        "probability lies in a band around the thresholds, chosen on "
                        "validation (about one pass a tile, the average's verdicts)")
    p.add_argument("--joint-rate", type=share, default=0.0, metavar="R",
                   help="share of training windows, cracked or intact, into which straight "
                        "joints (formwork, panel and tile joints) are drawn without changing "
                        "the label, 0 to 1 (default: 0)")
    p.add_argument("--joints-into", choices=input_pipeline.JOINTS_INTO, default="all",
                   help="which training windows --joint-rate draws joints into: all of "
                        "them, or intact ones only, so that a joint is learnt as a sign of "
                        "an intact surface rather than as noise (default: all)")
    p.add_argument("--int8", action="store_true",
                   help="also model_int8.tflite (calibrated on the train split, float layers "
                        "chosen on val), listed in the card only if, on every source's test "
                        "windows, it loses under 0.1 point of accuracy and flips under 0.2%% "
                        "of the float file's verdicts; the card records the figures either "
                        "way (default: no int8 model)")
    return p


def parse_form_args(p: argparse.ArgumentParser, argv: list[str] | None
                    ) -> argparse.Namespace:
    """``p``'s arguments, refusing a cascade without the views it re-scores with; for this
    command and ``training.reevaluate``, which take the same form flags."""
    args = cli.parse_args(p, argv)
    if args.cascade and not args.flip_average:
        p.error("--cascade needs --flip-average: the views it re-scores unsure tiles with")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_form_args(parser(), argv)
    verbosity.configure(argv)
    with cli.one_line_errors("training.train", input_pipeline.DataError, FileNotFoundError):
        report = train(args, argv)
    return summarise(report, args.output)


def summarise(report: dict, output: str) -> dict:
    """Prints a run's headline figures and where its files are; returns ``report``."""
    test = report["test"]
    print(f"test accuracy {test['accuracy']:.4f}  precision {test['precision']:.4f}  "
          f"recall {test['recall']:.4f}  F1 {test['f1']:.4f}  threshold "
          f"{test['threshold']:.3f}  ({test['counts']['total']} test examples, "
          f"{report['wall_seconds']:.0f}s)")
    for name, figures in report["by_source"]["test"].items():
        alarms = figures["false_alarm_rate"]
        print(f"  {name:<16} accuracy {figures['accuracy']:.4f}  recall "
              f"{figures['recall']:.4f}  false alarms "
              f"{'n/a' if alarms is None else f'{alarms:.4f}'}  "
              f"({figures['counts']['total']} test examples)")
    photos = report["photo_rule"]
    print(f"photo rule: {photos['tiles_needed']} tile(s) at {photos['photo_threshold']:.4f}; "
          f"test photos: recall {photos['test']['recall']}, false alarms "
          f"{photos['test']['false_alarm_rate']}; at {photos['survey_tiles']} tiles: recall "
          f"{photos['survey_size']['test']['recall']}, false alarms "
          f"{photos['survey_size']['test']['false_alarm_rate']}")
    print(f"model: {os.path.join(output, 'model.keras')}  card: "
          f"{os.path.join(output, 'model_card.json')}  plots: "
          f"{os.path.join(output, 'plots')}")
    return report


console = cli.console_script(main)


if __name__ == "__main__":
    main()
