"""Training input vs training step: tf.data examples/s against the model's step rate.

    python -m bench.training_input [--data TFRECORD_DIR | --source ../shared/data/concrete]
        [--weights ../shared/weights/mobilenet_v2_1.0_no_top.weights.h5]

The input must never be the bottleneck: the training input pipeline, built exactly as
``training.train`` builds it (``training.input_pipeline.dataset(..., training=True)``:
balanced draws from every (source, class), decode, resize, batch, augmentation, prefetch), should
deliver at least twice the examples per second that a training step consumes at the same
batch and image size (``training.train``'s defaults unless given). Measured in one run,
interleaved and repeated (median):

* ``input``: an epoch's worth of batches (the train split's size) iterated without a model,
  a fresh iterator each time, as ``fit`` makes one per stage, so cache and shuffle-buffer
  fills count;
* ``stage1`` / ``stage2``: ``fit`` steps of the real model, stage 1 with the backbone frozen
  and stage 2 with its top ``--fine-tune-layers`` unfrozen (batch norm frozen), compiled as
  ``training.train`` compiles them, fed one real training batch repeated from memory so
  the input costs nothing;
* ``stage1 fed`` / ``stage2 fed``: the same steps fed by the input pipeline itself. On a
  CPU the two compete for the same cores, so this is where a slow input would show.

Without ``--data`` the TFRecord set is built first from ``--source`` with
``training.build_dataset`` into a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import posixpath
import sys
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from bench.measure import interleaved_medians, machine, markdown_table
from training import build_dataset, input_pipeline, model as model_lib
from training.train import parser as train_parser

DEFAULT_SOURCE = Path("../shared/data/concrete")
DEFAULT_WEIGHTS = Path("../shared/weights/mobilenet_v2_1.0_no_top.weights.h5")
TARGET_RATIO = 2.0  # the input must deliver at least this many times the step rate


class StopAfter(keras.callbacks.Callback):
    """Ends ``fit`` once ``seconds`` have passed since the first step ended; the rate is
    over the steps after that one, so ``fit``'s own start-up is not counted."""

    def __init__(self, seconds: float, min_steps: int = 3) -> None:
        super().__init__()
        self._seconds = seconds
        self._min_steps = min_steps
        self.ends: list[float] = []

    def on_train_begin(self, logs=None) -> None:
        self.ends = []

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.ends.append(time.perf_counter())
        if (len(self.ends) > self._min_steps
                and self.ends[-1] - self.ends[0] >= self._seconds):
            self.model.stop_training = True

    def steps_per_second(self) -> float:
        return (len(self.ends) - 1) / (self.ends[-1] - self.ends[0])


def step_rate(model: keras.Model, data: tf.data.Dataset, batch_size: int,
              seconds: float) -> float:
    """Training examples/s of ``fit`` on ``data`` (an endless dataset of full batches)."""
    stop = StopAfter(seconds)
    model.fit(data, epochs=1, steps_per_epoch=10**9, callbacks=[stop], verbose=0)
    return stop.steps_per_second() * batch_size


def input_rate(data: tf.data.Dataset, seconds: float) -> float:
    """Examples/s over whole epochs of ``data`` (at least one, at least ``seconds``)."""
    done, started = 0, time.perf_counter()
    while not done or time.perf_counter() - started < seconds:
        for _, labels in data:
            done += int(labels.shape[0])
    return done / (time.perf_counter() - started)


def table(rates: dict[str, float], stages: list[str], descriptions: dict[str, str]) -> str:
    header = ["stage", "input pipeline ex/s", "train step ex/s (in-memory batch)",
              "input / step", f">= {TARGET_RATIO:g}x", "step fed by the input pipeline ex/s",
              "fed / in-memory"]
    rows = []
    for stage in stages:
        ratio = rates["input"] / rates[stage]
        rows.append([descriptions[stage], f"{rates['input']:.1f}", f"{rates[stage]:.1f}",
                     f"{ratio:.2f}x", "yes" if ratio >= TARGET_RATIO else "NO",
                     f"{rates[stage + ' fed']:.1f}",
                     f"{rates[stage + ' fed'] / rates[stage]:.2f}"])
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="TFRecord folder from training.build_dataset "
                                       "(default: build one from --source)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help=f"labelled image folder to build from (default {DEFAULT_SOURCE})")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                        help=f"backbone weights as training.train takes them (default "
                             f"{DEFAULT_WEIGHTS}, offline)")
    parser.add_argument("--batch-size", type=int, help="default: training.train's")
    parser.add_argument("--image-size", type=int, help="default: training.train's")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="least measuring time per measurement (default 5; input: "
                             "whole epochs, at least one)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats of every measurement (default 3)")
    args = parser.parse_args(argv)
    if args.data is None and not args.source.is_dir():
        parser.error(f"--source {args.source}: no such folder (or pass --data)")

    with tempfile.TemporaryDirectory(prefix="training-input-") as scratch:
        data = args.data
        if data is None:
            data = posixpath.join(scratch, "tfrecords")
            print(f"building the TFRecord set from {args.source} ...", file=sys.stderr,
                  flush=True)
            started = time.perf_counter()
            build_dataset.build(str(args.source), data)
            print(f"  built in {time.perf_counter() - started:.0f} s", file=sys.stderr,
                  flush=True)
        return measure(args, data)


def measure(args: argparse.Namespace, data: str) -> str:
    # training.train's defaults (batch, image size, learning rates, layers, seed, dropout).
    train = train_parser().parse_args(["--data", data, "--output", "unused",
                                       "--weights", args.weights])
    train.batch_size = args.batch_size or train.batch_size
    train.image_size = args.image_size or train.image_size
    with tf.io.gfile.GFile(posixpath.join(data, "manifest.json")) as handle:
        manifest = json.load(handle)
    keras.utils.set_random_seed(train.seed)
    train_ds = input_pipeline.dataset(data, "train", train.image_size, train.batch_size,
                                      training=True, seed=train.seed)
    # One real augmented batch, repeated from memory: the step is all that is measured.
    images, labels = next(iter(train_ds))
    in_memory = tf.data.Dataset.from_tensors((images, labels)).repeat()
    fed = train_ds  # endless, as training.train feeds it
    epoch = train_ds.take(max(1, manifest["counts"]["train"]["total"] // train.batch_size))

    print(f"building the models ({train.image_size} px, batch {train.batch_size}, "
          f"weights {train.weights}) ...", file=sys.stderr, flush=True)
    classes = len(manifest["class_names"])
    models: dict[str, keras.Model] = {}
    descriptions: dict[str, str] = {}
    model, _ = model_lib.build(train.image_size, train.weights, train.dropout, classes)
    model_lib.compile_model(model, train.learning_rate)
    models["stage1"] = model
    descriptions["stage1"] = ("stage 1 (backbone frozen)" if train.weights != "none"
                              else "stage 1 (from scratch, all trainable)")
    if train.weights != "none":  # training.train fine-tunes only a pretrained backbone
        model, base = model_lib.build(train.image_size, train.weights, train.dropout,
                                      classes)
        unfrozen = model_lib.unfreeze_top(base, train.fine_tune_layers)
        model_lib.compile_model(model, train.fine_tune_learning_rate)
        models["stage2"] = model
        descriptions["stage2"] = (f"stage 2 (top {train.fine_tune_layers} layers, "
                                  f"{unfrozen} with weights, fine-tuned)")
    stages = list(models)
    for stage, model in models.items():  # trace the train step outside the measurements
        print(f"tracing the {stage} train step ...", file=sys.stderr, flush=True)
        step_rate(model, in_memory, train.batch_size, 0.0)
    input_rate(train_ds.take(2), 0.0)

    sources = {"input": None, **{stage: in_memory for stage in stages},
               **{f"{stage} fed": fed for stage in stages}}
    names = list(sources)
    count = iter(range(1, len(names) * args.repeats + 1))

    def one(name: str) -> float:
        if name == "input":
            rate = input_rate(epoch, args.seconds)
        else:
            rate = step_rate(models[name.split()[0]], sources[name], train.batch_size,
                             args.seconds)
        print(f"  [{next(count)}/{len(names) * args.repeats}] {name}: {rate:.1f} examples/s",
              file=sys.stderr, flush=True)
        return rate

    rates = interleaved_medians(one, names, args.repeats)
    counts = manifest["counts"]["train"]
    print(f"examples/s, median of {args.repeats} interleaved runs of >= {args.seconds:g} s; "
          f"batch {train.batch_size}, {train.image_size} px, training split "
          f"{counts['total']} examples ({data}), weights {train.weights}; "
          f"TF threads: default\n{machine()}\n")
    result = table(rates, stages, descriptions)
    print(result)
    return result


if __name__ == "__main__":
    main()
