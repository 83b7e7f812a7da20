"""Build a sharded TFRecord data set from a labelled folder archive.

``python -m training.build_dataset --source SRC --output DIR``

SRC holds one sub-folder per class (``Negative/`` = 0, ``Positive/`` = 1), as a folder on
any Beam file system or a ``.zip`` / ``.tar(.gz)`` of that layout. Images are split by the
sha256 of their bytes, so the split is the same on every run and machine and an image that
appears twice (the public set holds 40,000 files but 38,402 distinct images) can never sit
in both train and test: exact duplicates are kept once.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import posixpath
import sys
from collections import Counter, defaultdict
from typing import Any, Iterable

import tensorflow as tf
from tqdm import tqdm

from crackscan import decode, sources
from training import records

CLASS_NAMES = ("Negative", "Positive")
SPLITS = ("train", "val", "test")
log = logging.getLogger("crackscan.build_dataset")


def split_of(sha256: str, val_fraction: float, test_fraction: float) -> str:
    """Split from the content hash alone: a position in [0, 1) fixed by the bytes."""
    position = int(sha256[:16], 16) / 2**64
    if position < test_fraction:
        return "test"
    if position < test_fraction + val_fraction:
        return "val"
    return "train"


def class_of(uri: str) -> str | None:
    """The nearest enclosing folder named after a class, inside archives too."""
    for part in reversed(uri.replace(sources.ARCHIVE_SEPARATOR, "/").split("/")[:-1]):
        if part in CLASS_NAMES:
            return part
    return None


def shard_paths(output: str, split: str, shards: int) -> list[str]:
    return [posixpath.join(output, f"{split}-{i:05d}-of-{shards:05d}.tfrecord")
            for i in range(shards)]


def collect(source: str, max_pixels: int) -> tuple[dict[str, dict], list[dict], list[dict]]:
    """Read every item once: unique examples by hash, rejected inputs, and duplicates."""
    groups: dict[str, list[dict]] = defaultdict(list)
    errors: list[dict] = []
    for item in tqdm(sources.iter_items(source), desc="reading", unit=" files",
                     disable=None, file=sys.stderr):
        label_name = class_of(item.uri)
        if item.data is None:
            errors.append({"uri": item.uri, "stage": item.stage, "error": item.error})
            continue
        if label_name is None:
            errors.append({"uri": item.uri, "stage": "label",
                           "error": f"not inside a class folder {list(CLASS_NAMES)}"})
            continue
        try:
            encoded, fmt, size = records.training_bytes(item.data, max_pixels)
        except decode.DecodeError as exc:
            errors.append({"uri": item.uri, "stage": "decode", "error": str(exc)})
            continue
        sha = hashlib.sha256(item.data).hexdigest()
        groups[sha].append({"uri": item.uri, "label": CLASS_NAMES.index(label_name),
                            "sha256": sha, "encoded": encoded, "format": fmt, "size": size})
    examples: dict[str, dict] = {}
    duplicates: list[dict] = []
    for sha, group in groups.items():
        group.sort(key=lambda e: e["uri"])
        if len({e["label"] for e in group}) > 1:
            names = ", ".join(e["uri"] for e in group)
            errors += [{"uri": e["uri"], "stage": "label",
                        "error": f"the same image bytes appear under both classes: {names}"}
                       for e in group]
            continue
        examples[sha] = group[0]
        duplicates += [{"uri": e["uri"], "same_as": group[0]["uri"]} for e in group[1:]]
    for error in errors:
        log.warning("skipped %s (%s): %s", error["uri"], error["stage"], error["error"])
    return examples, errors, duplicates


def fingerprint(examples: Iterable[dict]) -> str:
    """Content fingerprint of the data set: independent of file names, order and machine."""
    digest = hashlib.sha256()
    for sha, label in sorted((e["sha256"], e["label"]) for e in examples):
        digest.update(f"{sha}:{label}\n".encode())
    return digest.hexdigest()


def write_shards(examples: list[dict], output: str, split: str, shards: int) -> list[str]:
    """Records in hash order, dealt round-robin: every shard a label-mixed, stable subset."""
    paths = shard_paths(output, split, shards)
    writers = [tf.io.TFRecordWriter(path) for path in paths]
    try:
        for index, example in enumerate(sorted(examples, key=lambda e: e["sha256"])):
            writers[index % shards].write(records.serialize(
                example["encoded"], example["format"], example["label"], example["uri"],
                example["sha256"]))
    finally:
        for writer in writers:
            writer.close()
    return [posixpath.basename(path) for path in paths]


def build(source: str, output: str, shards: int = 4, val_fraction: float = 0.1,
          test_fraction: float = 0.1, max_pixels: int = decode.DEFAULT_MAX_PIXELS
          ) -> dict[str, Any]:
    """Build the data set and return its manifest (also written to ``output``)."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or \
            val_fraction + test_fraction >= 1:
        raise ValueError("val and test fractions must be in [0, 1) and leave a train split")
    examples, errors, duplicates = collect(source, max_pixels)
    if not examples:
        raise ValueError(f"{source}: no decodable image inside {list(CLASS_NAMES)} folders")
    tf.io.gfile.makedirs(output)
    by_split: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for example in examples.values():
        by_split[split_of(example["sha256"], val_fraction, test_fraction)].append(example)
    manifest: dict[str, Any] = {
        "source": source,
        "source_fingerprint": fingerprint(examples.values()),
        "class_names": list(CLASS_NAMES),
        "options": {"shards": shards, "val_fraction": val_fraction,
                    "test_fraction": test_fraction, "max_pixels": max_pixels,
                    "split_rule": "sha256 of file bytes, first 64 bits as a fraction"},
        "counts": {}, "shards": {}, "image_sizes": {},
        "errors": errors, "duplicates": duplicates,
    }
    for split, members in by_split.items():
        labels = Counter(CLASS_NAMES[e["label"]] for e in members)
        manifest["counts"][split] = {name: labels.get(name, 0) for name in CLASS_NAMES} | {
            "total": len(members)}
        manifest["shards"][split] = write_shards(members, output, split, shards) \
            if members else []
    sizes = Counter(f"{e['size'][0]}x{e['size'][1]}" for e in examples.values())
    manifest["image_sizes"] = dict(sizes.most_common())
    manifest["counts"]["rejected"] = len(errors)
    manifest["counts"]["duplicates"] = len(duplicates)
    with tf.io.gfile.GFile(posixpath.join(output, "manifest.json"), "w") as handle:
        json.dump(manifest, handle, indent=2)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True,
                        help="folder with Negative/ and Positive/, or a .zip/.tar(.gz) of it")
    parser.add_argument("--output", required=True, help="folder for shards and manifest.json")
    parser.add_argument("--shards", type=int, default=4, help="shards per split")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--max-pixels", type=int, default=decode.DEFAULT_MAX_PIXELS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    manifest = build(args.source, args.output, args.shards, args.val_fraction,
                     args.test_fraction, args.max_pixels)
    counts = manifest["counts"]
    for split in SPLITS:
        print(f"{split:>5}: {counts[split]['total']:6d} images  "
              + "  ".join(f"{name} {counts[split][name]}" for name in CLASS_NAMES))
    print(f"rejected {counts['rejected']}, duplicates dropped {counts['duplicates']}; "
          f"fingerprint {manifest['source_fingerprint'][:16]}; "
          f"manifest {os.path.join(args.output, 'manifest.json')}")


if __name__ == "__main__":
    main()
