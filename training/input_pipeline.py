"""tf.data input from the TFRecord shards: balanced sampling, decode, resize, augment, batch.

Training draws from one stream per (source, class) so that no source and neither class is
drowned by the largest one: half of each batch is cracks, half intact surface, each half
shared equally among the sources that have that class. Otherwise 14,000 windows of walls
would teach the model walls and the 500 of drone decks would hardly count.

Resizing here uses the same op and settings as the model's own ``Resizing`` layer, so an
image resized by the pipeline and an image of its original size resized inside the model
give identical pixels: evaluation and the exported model agree exactly.
"""
from __future__ import annotations

import json
import posixpath
from typing import Callable

import keras
import tensorflow as tf

from crackscan.labels import CLASS_NAMES
from training import tfrecords
from training.joints import RandomJoints

AUTOTUNE = tf.data.AUTOTUNE
# Per (source, class) stream; the shards are already in hash order, i.e. shuffled.
STREAM_SHUFFLE = 2048


class DataError(ValueError):
    """A data set folder that training cannot use; the message names the file and why."""


def read_manifest(data_dir: str) -> dict:
    path = posixpath.join(data_dir, "manifest.json")
    try:
        with tf.io.gfile.GFile(path) as handle:
            manifest = json.load(handle)
    except tf.errors.NotFoundError:
        raise DataError(f"{path}: no such file; run training.build_dataset first") from None
    except (tf.errors.OpError, ValueError) as exc:
        raise DataError(f"{path}: not a readable manifest: {exc}") from None
    missing = [key for key in ("class_names", "counts", "counts_by_source", "sources")
               if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise DataError(f"{path}: not a manifest of this training.build_dataset, it lacks "
                        f"{missing}; rebuild the data set")
    return manifest


def shard_files(data_dir: str, split: str) -> list[str]:
    """The split's shards as its manifest lists them, not as a pattern finds them: a folder
    built again with another shard count also holds the earlier build's files, whose windows
    (its test split's among them) would otherwise be read with the new ones."""
    names = read_manifest(data_dir).get("shards", {}).get(split)
    if not names:
        raise DataError(f"{data_dir}: the manifest lists no {split} shards; run "
                        f"training.build_dataset first")
    files = [posixpath.join(data_dir, name) for name in names]
    missing = [name for name, path in zip(names, files) if not tf.io.gfile.exists(path)]
    if missing:
        raise DataError(f"{data_dir}: {split} shards listed in manifest.json are missing: "
                        f"{', '.join(missing)}; rebuild the data set")
    return files


JOINTS_INTO = ("all", "intact")


def augmenter(seed: int, joint_rate: float = 0.0, joints_into: str = "all"
              ) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """What changes between drone photos of one crack: direction, distance, focus, light,
    camera colour; with ``joint_rate``, straight joints drawn first (:mod:`training.joints`),
    so that they are turned, blurred and coloured with the rest. None of it changes the
    label: a crack stays in the window's central half under a zoom of at most 20%, and the
    blur is kept below erasing a hairline.

    ``joints_into="intact"`` draws joints into intact windows only: drawn into cracked
    windows as well, they taught the model that a joint beside a crack is still a crack,
    and lowered the threshold until the drone sources' intact windows fired. The returned
    function takes a batch of images and their hard labels (0 intact, 1 cracked)."""
    if joints_into not in JOINTS_INTO:
        raise ValueError(f"joints_into {joints_into!r}: choose one of {', '.join(JOINTS_INTO)}")
    joints = RandomJoints(joint_rate, seed=seed + 5) if joint_rate else None
    camera = keras.Sequential([
        keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
        keras.layers.RandomRotation(0.5, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomZoom((-0.2, 0.2), fill_mode="reflect", seed=seed + 2),
        keras.layers.RandomGaussianBlur(factor=0.5, kernel_size=3, sigma=1.0, seed=seed + 3),
        keras.layers.RandomColorJitter(brightness_factor=0.2, contrast_factor=0.3,
                                       saturation_factor=(0.3, 0.7), seed=seed + 4),
    ], name="augmentation")

    def augment(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        if joints is not None:
            eligible = (tf.cast(tf.equal(labels, 0), images.dtype) if joints_into == "intact"
                        else None)
            images = joints(images, training=True, eligible=eligible)
        return camera(images, training=True)

    return augment


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    return tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=False)


def _pixels(example: dict, image_size: int) -> tf.Tensor:
    return resize(tfrecords.decode_pixels(example["image/encoded"], example["image/format"]),
                  image_size)


def _parsed(data_dir: str, split: str) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(shard_files(data_dir, split),
                                   num_parallel_reads=AUTOTUNE).map(
        tfrecords.parse, num_parallel_calls=AUTOTUNE)


def stream_weights(counts_by_source: dict[str, dict],
                   source_weights: dict[str, float] | None = None
                   ) -> dict[tuple[str, int], float]:
    """Sampling weight of each (source, class) stream with examples: each class half the
    mass, shared among the sources that have it in proportion to ``source_weights``
    (default 1 each), so that a source closer to the product's use can count for more."""
    source_weights = source_weights or {}
    unknown = sorted(set(source_weights) - set(counts_by_source))
    if unknown:
        raise DataError(f"source weight for {', '.join(unknown)}: no such source in the data "
                        f"set (it has {', '.join(sorted(counts_by_source))})")
    streams = [(source, label) for source, counts in sorted(counts_by_source.items())
               for label, name in enumerate(CLASS_NAMES) if counts.get(name, 0) > 0]
    weight = {source: source_weights.get(source, 1.0) for source, _ in streams}
    per_class = {label: sum(weight[s] for s, l in streams if l == label) for label in (0, 1)}
    present = [label for label in (0, 1) if per_class[label]]
    return {(source, label): weight[source] / len(present) / per_class[label]
            for source, label in streams}


def soft_targets(teacher: dict[str, float], teacher_weight: float):
    """A map from a parsed example to its ``[intact, crack]`` target: the label blended with
    the teachers' crack probability (:mod:`training.teachers`), ``teacher_weight`` of it
    from the teachers. A window the teachers did not score is refused, not trained on its
    label alone."""
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        list(teacher), tf.constant(list(teacher.values()), tf.float32)), default_value=-1.0)

    def target(example: dict) -> tf.Tensor:
        taught = table.lookup(example["image/sha256"])
        with tf.control_dependencies([tf.debugging.assert_non_negative(
                taught, message="a training window the teachers did not score")]):
            crack = ((1 - teacher_weight) * tf.cast(example["image/label"], tf.float32)
                     + teacher_weight * taught)
        return tf.stack([1 - crack, crack])

    return target


def balanced_train(data_dir: str, image_size: int, batch_size: int, seed: int,
                   source_weights: dict[str, float] | None = None,
                   teacher: dict[str, float] | None = None, teacher_weight: float = 0.5,
                   joint_rate: float = 0.0, joints_into: str = "all") -> tf.data.Dataset:
    """Endless augmented training batches (:func:`augmenter`), balanced over sources and
    classes; with a ``teacher`` (window sha256 -> crack probability) the labels are
    :func:`soft_targets`."""
    counts = read_manifest(data_dir)["counts_by_source"]["train"]
    parsed = _parsed(data_dir, "train")
    streams, weights = [], []
    for (source, label), weight in stream_weights(counts, source_weights).items():
        stream = parsed.filter(lambda e, s=source, l=label: tf.logical_and(
            tf.equal(e["image/source"], s), tf.equal(e["image/label"], l)))
        streams.append(stream.cache().shuffle(STREAM_SHUFFLE, seed=seed,
                                              reshuffle_each_iteration=True).repeat())
        weights.append(weight)
    ds = tf.data.Dataset.sample_from_datasets(streams, weights, seed=seed)
    target = (soft_targets(teacher, teacher_weight) if teacher is not None
              else lambda e: tf.cast(e["image/label"], tf.int32))
    ds = ds.map(lambda e: (_pixels(e, image_size), target(e),
                           tf.cast(e["image/label"], tf.int32)), num_parallel_calls=AUTOTUNE)
    augment = augmenter(seed, joint_rate, joints_into)
    # One batch at a time: each call draws its random transforms from the layers' seed
    # state, and parallel calls would race for it, so the same seed would augment
    # differently from run to run. The ops inside use every core instead: tf.data runs a
    # map's ops on one thread unless told otherwise, which holds augmentation to about
    # half its rate on 2 cores (bench/README.md, section 4).
    ds = ds.batch(batch_size, drop_remainder=True).map(
        lambda x, y, label: (augment(x, label), y))
    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 0
    return ds.prefetch(AUTOTUNE).with_options(options)


def balanced_validation(data_dir: str, split: str, image_size: int, batch_size: int,
                        source_weights: dict[str, float] | None = None,
                        one_hot: bool = False) -> tf.data.Dataset:
    """Batches of (images, labels, weights) where each (source, class) carries the share of
    the loss it has in a training batch; ``one_hot`` labels for a model trained on
    :func:`soft_targets` (validation always measures against the labels themselves).

    Early stopping and the checkpoints watch this loss. Unweighted, wallseg's 841 validation
    windows outvote uavcrack's 134 and the 34 of uav75, so the epoch kept is the one best at
    walls; weighted, it is the one best across sources, as the threshold rule judges.
    """
    counts = read_manifest(data_dir)["counts_by_source"][split]
    shares = stream_weights(counts, source_weights)
    total = sum(counts[source][CLASS_NAMES[label]] for source, label in shares)
    keys, values = [], []
    for (source, label), share in shares.items():
        keys.append(f"{source}/{label}")
        values.append(share * total / counts[source][CLASS_NAMES[label]])
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, tf.constant(values, tf.float32)),
        default_value=0.0)

    def load(example: dict):
        key = tf.strings.join([example["image/source"],
                               tf.strings.as_string(example["image/label"])], separator="/")
        label = tf.cast(example["image/label"], tf.int32)
        return (_pixels(example, image_size),
                tf.one_hot(label, len(CLASS_NAMES)) if one_hot else label, table.lookup(key))

    return (_parsed(data_dir, split).filter(lambda e: e["image/label"] >= 0)
            .map(load, num_parallel_calls=AUTOTUNE).batch(batch_size).prefetch(AUTOTUNE))


def window_hashes(data_dir: str, split: str) -> list[str]:
    """The sha256 of each labelled window of a split, in :func:`dataset`'s order, read
    without decoding a pixel: what knowing which windows a split holds costs."""
    return [sha.decode() for sha in _parsed(data_dir, split)
            .filter(lambda e: e["image/label"] >= 0)
            .map(lambda e: e["image/sha256"], num_parallel_calls=AUTOTUNE)
            .as_numpy_iterator()]


def dataset(data_dir: str, split: str, image_size: int, batch_size: int,
            training: bool = False, seed: int = 0, with_meta: bool = False,
            whole_photos: bool = False, source_weights: dict[str, float] | None = None,
            teacher: dict[str, float] | None = None, teacher_weight: float = 0.5,
            joint_rate: float = 0.0, joints_into: str = "all") -> tf.data.Dataset:
    """Batches of (float 0-255 RGB images, labels), in file order unless ``training``.

    ``training`` gives :func:`balanced_train`'s endless batches (``source_weights`` as in
    :func:`stream_weights`, ``teacher`` as in :func:`soft_targets`, ``joint_rate`` and
    ``joints_into`` as in :func:`augmenter`). ``with_meta`` adds a dict of source, sha256,
    photo and uri per example; ``whole_photos`` keeps the windows the labelling rule left
    out (label -1), so that photos can be judged whole.
    """
    if training:
        return balanced_train(data_dir, image_size, batch_size, seed, source_weights,
                              teacher, teacher_weight, joint_rate, joints_into)
    ds = _parsed(data_dir, split)
    if not whole_photos:
        ds = ds.filter(lambda e: e["image/label"] >= 0)

    def load(example: dict):
        image = _pixels(example, image_size)
        label = tf.cast(example["image/label"], tf.int32)
        if with_meta:
            return image, label, {"source": example["image/source"],
                                  "sha256": example["image/sha256"],
                                  "photo": example["image/photo"],
                                  "uri": example["image/uri"]}
        return image, label

    return ds.map(load, num_parallel_calls=AUTOTUNE).batch(batch_size).prefetch(AUTOTUNE)
