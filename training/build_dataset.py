"""Build a sharded TFRecord data set from labelled sources.

``python -m training.build_dataset --source SRC [--source NAME=SRC ...] --output DIR``

Two kinds of source, mixed freely in one build:

- **class folders**: one sub-folder per class (``Negative/`` = 0, ``Positive/`` = 1), as a
  folder on any Beam file system or a ``.zip`` / ``.tar(.gz)`` of that layout; each image is
  one example.
- **mask sources**: ``images/`` beside ``masks/<same name>.png`` (crack segmentation, see
  :mod:`training.windows`); each photo is cut into windows exactly as the scorer tiles it
  and every window is labelled from its mask.

The split keeps together what would leak if separated: every window of a photo, and every
near-copy of a photo (found by perceptual hash, :mod:`training.near_copies`, plus a source's
``manifest.csv`` ``group`` column where there is one). It follows from content hashes
alone (:func:`assign_splits`), so it is the same on every run and machine; exact duplicates
are kept once.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import posixpath
import shlex
import sys
import time
from collections import Counter, defaultdict
from typing import Any, Collection, Iterable, Iterator

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from crackscan import cli, decode, sources, verbosity
from crackscan.labels import CLASS_NAMES, EXCLUDED, NEGATIVE
from crackscan.model_card import join
from crackscan.tiles import TilingError, default_stride, plan_tiles
from training import near_copies, tfrecords, windows

SPLITS = ("train", "val", "test")
DEFAULT_TILE_SIZE = 224
MASK_SUFFIX = ".png"
# A source's own description, read by the build (groups, licence), not examples to label.
SOURCE_FILES = ("manifest.csv", "SOURCE.md")
FOLDER, MASKS = "class folders", "masks"
log = logging.getLogger("crackscan.build_dataset")


@dataclasses.dataclass
class Photo:
    """One distinct source image and the examples cut from it."""

    uri: str
    source: str
    sha256: str
    hashes: np.ndarray
    examples: list[dict]
    group_hint: str | None = None  # a manifest's group: same hint, same group


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    path: str
    kind: str
    licence: str | None = None


class BuildError(ValueError):
    """A build that cannot give a usable data set; the message names the source."""


def split_at(position: float, val_fraction: float, test_fraction: float) -> str:
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


def _listing(path: str) -> list[str]:
    try:
        return sources.expand(path)
    except sources.SourceError:
        return []


def parse_source(text: str) -> Source:
    """``[NAME=]PATH``; the name defaults to the path's last component, the kind to what
    the layout is: ``images/`` + ``masks/`` makes a mask source."""
    name, _, path = text.partition("=") if "=" in text.split("/")[0] else ("", "", text)
    name = name or posixpath.basename(path.rstrip("/")) or path
    is_masks = not sources.is_archive(path) and bool(_listing(join(path, "masks/"))) and \
        bool(_listing(join(path, "images/")))
    return Source(name, path, MASKS if is_masks else FOLDER, stated_licence(path))


def stated_licence(path: str) -> str | None:
    """The licence line of a source's ``SOURCE.md`` (as the shared field sources carry),
    so a model trained on it can say under which terms its data came."""
    readme = join(path, "SOURCE.md")
    if sources.is_archive(path) or not _listing(readme):
        return None
    for line in sources.read_file(readme).decode("utf-8", "replace").splitlines():
        if line.lstrip("- ").lower().startswith("licence"):
            return line.lstrip("- ").split(":", 1)[-1].strip()
    return None


def _example(encoded: bytes, fmt: str, label: int, uri: str, source: str,
             box: tuple[int, int, int, int], photo: str, hard_negative: bool = False,
             sha256: str | None = None) -> dict:
    return {"encoded": encoded, "format": fmt, "label": label, "uri": uri, "source": source,
            "box": box, "photo": photo, "hard_negative": hard_negative,
            "sha256": sha256 or hashlib.sha256(encoded).hexdigest()}


def folder_photos(source: Source, max_pixels: int, errors: list[dict]) -> Iterator[Photo]:
    """One example per image of a class-folder source, labelled by its folder; a
    ``manifest.csv`` may group images by name as for mask sources (tiles exported for review
    from one photo overlap, and near-copy hashing does not join all of them)."""
    groups = _manifest_groups(source)
    own_files = {sources.file_uri(join(source.path, name)) for name in SOURCE_FILES}
    for item in tqdm(sources.iter_items(source.path), desc=f"reading {source.name}",
                     unit=" files", disable=None, file=sys.stderr):
        if item.uri in own_files:
            continue
        label_name = class_of(item.uri)
        if item.data is None:
            errors.append({"uri": item.uri, "stage": item.stage, "error": item.error})
            continue
        if label_name is None:
            errors.append({"uri": item.uri, "stage": "label",
                           "error": f"not inside a class folder {list(CLASS_NAMES)}"})
            continue
        try:
            encoded, fmt, rgb = tfrecords.training_bytes(item.data, max_pixels)
        except decode.DecodeError as exc:
            errors.append({"uri": item.uri, "stage": "decode", "error": str(exc)})
            continue
        sha = hashlib.sha256(item.data).hexdigest()
        height, width = rgb.shape[:2]
        path, member, _ = sources.split_uri(item.uri)
        stem = _stem(member if member is not None else path)
        yield Photo(item.uri, source.name, sha, near_copies.perceptual_hashes(rgb), [
            _example(encoded, fmt, CLASS_NAMES.index(label_name), item.uri, source.name,
                     (0, 0, width, height), sha, sha256=sha)],
            f"{source.name}/{groups[stem]}" if stem in groups else None)


def _manifest_groups(source: Source) -> dict[str, str]:
    """``name -> group`` from the source's ``manifest.csv``, when it has one."""
    path = join(source.path, "manifest.csv")
    if not _listing(path):
        return {}
    text = sources.read_file(path).decode("utf-8")
    return {row["name"]: row["group"] for row in csv.DictReader(io.StringIO(text))
            if row.get("name") and row.get("group")}


def _stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[0]


def mask_photos(source: Source, tile_size: int, stride: int, max_pixels: int,
                errors: list[dict], clear_crops: bool = False) -> Iterator[Photo]:
    """The windows of every photo of a mask source (with ``clear_crops``, a photo without a
    Negative window adds its clear crop, :func:`training.windows.clear_crop`); a photo
    whose mask is missing, not a mask or of another size is reported and skipped."""
    masks = {_stem(path): path for path in _listing(join(source.path, "masks/"))}
    groups = _manifest_groups(source)
    for path in tqdm(sources.expand(join(source.path, "images/")),
                     desc=f"windows {source.name}", unit=" photos", disable=None,
                     file=sys.stderr):
        uri, stem = sources.file_uri(path), _stem(path)
        if stem not in masks:
            errors.append({"uri": uri, "stage": "mask",
                           "error": f"no mask: expected masks/{stem}{MASK_SUFFIX}"})
            continue
        try:
            data = sources.read_file(path)
            rgb = decode.decode_rgb(data, max_pixels)
        except (decode.DecodeError, OSError) as exc:
            errors.append({"uri": uri, "stage": "decode", "error": str(exc)})
            continue
        height, width = rgb.shape[:2]
        try:
            mask = windows.decode_mask(sources.read_file(masks[stem]), (width, height),
                                       max_pixels)
        except (decode.DecodeError, OSError) as exc:
            errors.append({"uri": uri, "stage": "mask", "error": str(exc)})
            continue
        try:
            plan = plan_tiles(width, height, tile_size, stride, max_pixels)
        except TilingError as exc:
            errors.append({"uri": uri, "stage": "tile", "error": str(exc)})
            continue
        sha = hashlib.sha256(data).hexdigest()
        cut = list(windows.windows(plan, rgb, mask))
        if clear_crops and not any(w.label == NEGATIVE for w in cut):
            crop = windows.clear_crop(plan, rgb, mask, len(cut))
            cut += [crop] if crop is not None else []
        examples = [_example(windows.encode_png(w.pixels), "png", w.label, uri, source.name,
                             w.box, sha, w.hard_negative) for w in cut]
        yield Photo(uri, source.name, sha, near_copies.perceptual_hashes(rgb), examples,
                    f"{source.name}/{groups[stem]}" if stem in groups else None)


def collect(source_list: list[Source], tile_size: int, stride: int, max_pixels: int,
            clear_crops: Collection[str] = ()) -> tuple[list[Photo], list[dict], list[dict]]:
    """Every distinct photo of every source, the rejected inputs and the duplicates; the
    mask sources named in ``clear_crops`` add clear crops (:func:`mask_photos`)."""
    errors: list[dict] = []
    by_sha: dict[str, list[Photo]] = defaultdict(list)
    for source in source_list:
        # Log lines as well as the bars: a build left to a log file has its bars off, and a
        # source of drone maps takes minutes.
        log.info("source %s: reading %s (%s)", source.name, source.path, source.kind)
        started, read, windows_read, skipped = time.monotonic(), 0, 0, len(errors)
        photos = (mask_photos(source, tile_size, stride, max_pixels, errors,
                              source.name in clear_crops)
                  if source.kind == MASKS else folder_photos(source, max_pixels, errors))
        for photo in photos:
            by_sha[photo.sha256].append(photo)
            read, windows_read = read + 1, windows_read + len(photo.examples)
        log.info("source %s: %d images read, %d examples, %d rejected, in %.0f s", source.name,
                 read, windows_read, len(errors) - skipped, time.monotonic() - started)
    unique: list[Photo] = []
    duplicates: list[dict] = []
    for sha, group in by_sha.items():
        group.sort(key=lambda p: p.uri)
        if len({tuple(e["label"] for e in p.examples) for p in group}) > 1:
            names = ", ".join(p.uri for p in group)
            errors += [{"uri": p.uri, "stage": "label",
                        "error": f"the same image bytes appear under both classes: {names}"}
                       for p in group]
            continue
        unique.append(group[0])
        duplicates += [{"uri": p.uri, "same_as": group[0].uri} for p in group[1:]]
    for error in errors:
        log.warning("skipped %s (%s): %s", error["uri"], error["stage"], error["error"])
    unique.sort(key=lambda p: p.sha256)
    return unique, errors, duplicates


def assign_splits(photos: list[Photo], val_fraction: float, test_fraction: float
                  ) -> tuple[list[str], dict[str, Any]]:
    """Each photo's split, decided per group of near-copies, and figures on the groups.

    Within each source, groups are laid end to end in the order of their first photo's
    content hash, each as long as its labelled examples, and a group takes the split where
    its middle falls. A split by hash alone would be lumpy where groups are few and large
    (one drone map of 75 tiles is one group); this keeps every source's fractions close to
    the ones asked for, and depends on nothing but the content.
    """
    hints: dict[str, int] = {}
    linked = []
    for index, photo in enumerate(photos):
        if photo.group_hint is not None:
            linked.append((hints.setdefault(photo.group_hint, index), index))
    group_of, pairs = near_copies.near_copy_groups(
        np.stack([p.hashes for p in photos]), linked)
    members: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(group_of):
        members[group].append(index)
    def group_size(group: int) -> int:
        return max(1, sum(e["label"] != EXCLUDED for i in members[group]
                          for e in photos[i].examples))

    def main_source(group: int) -> str:
        """The source holding most of a group's examples (near-copies can cross sources)."""
        by_source = Counter()
        for i in members[group]:
            by_source[photos[i].source] += len(photos[i].examples)
        return min(by_source, key=lambda name: (-by_source[name], name))

    split_of_group: dict[int, str] = {}
    source_of_group = {group: main_source(group) for group in members}
    for source in sorted(set(source_of_group.values())):
        groups = sorted((g for g in members if source_of_group[g] == source),
                        key=lambda g: photos[g].sha256)
        sizes = [group_size(g) for g in groups]
        total, start = sum(sizes), 0
        for group, size in zip(groups, sizes):
            split_of_group[group] = split_at((start + size / 2) / total, val_fraction,
                                             test_fraction)
            start += size
    figures = {"groups": len(members), "near_copy_pairs": pairs,
               "photos_in_shared_groups": sum(len(m) for m in members.values() if len(m) > 1),
               "largest_group": max(len(m) for m in members.values()),
               "rule": f"pHash within {near_copies.DEFAULT_MAX_DISTANCE} bits under any flip "
                       f"or quarter turn, or one manifest.csv group; transitive"}
    return [split_of_group[group] for group in group_of], figures


def fingerprint(examples: Iterable[dict]) -> str:
    """Content fingerprint of the data set: independent of file names, order and machine."""
    digest = hashlib.sha256()
    for sha, label in sorted((e["sha256"], e["label"]) for e in examples):
        digest.update(f"{sha}:{label}\n".encode())
    return digest.hexdigest()


def remove_earlier_shards(output: str) -> None:
    """A folder built again holds the earlier build's shards; training reads only those its
    manifest lists, but left behind they would double the folder and confuse whoever lists
    it. Only the files that build's manifest names go: anything else in the folder is the
    user's, however it is named. Teachers' kept scores stay: they are keyed by window
    content."""
    path = posixpath.join(output, "manifest.json")
    try:
        with tf.io.gfile.GFile(path) as handle:
            listed = json.load(handle).get("shards", {})
        names = [name for split in SPLITS for name in listed.get(split, [])]
    except tf.errors.NotFoundError:
        return
    except (tf.errors.OpError, ValueError, AttributeError, TypeError) as exc:
        log.warning("%s: not a readable manifest (%s); earlier shards, if any, are left "
                    "in place", path, exc)
        return
    earlier = [posixpath.join(output, name) for name in names
               if isinstance(name, str) and posixpath.basename(name) == name]
    earlier = [shard for shard in earlier if tf.io.gfile.exists(shard)]
    for shard in earlier:
        tf.io.gfile.remove(shard)
    if earlier:
        log.info("%s: removed %d shards of an earlier build", output, len(earlier))


def write_shards(examples: list[dict], output: str, split: str, shards: int) -> list[str]:
    """Records in hash order, dealt round-robin: every shard a label-mixed, stable subset."""
    paths = shard_paths(output, split, shards)
    writers = [tf.io.TFRecordWriter(path) for path in paths]
    try:
        for index, example in enumerate(sorted(examples, key=lambda e: (e["sha256"],
                                                                        e["uri"], e["box"]))):
            writers[index % shards].write(tfrecords.serialize(example))
    finally:
        for writer in writers:
            writer.close()
    return [posixpath.basename(path) for path in paths]


def _counts(examples: list[dict]) -> dict[str, Any]:
    """Per class (and excluded windows, hard negatives, total) of some examples."""
    labels = Counter(e["label"] for e in examples)
    counts = {name: labels.get(index, 0) for index, name in enumerate(CLASS_NAMES)}
    counts["total"] = counts["Negative"] + counts["Positive"]
    counts["hard_negative"] = sum(e["hard_negative"] for e in examples)
    if labels.get(EXCLUDED):
        counts["excluded"] = labels[EXCLUDED]
    return counts


def build(source: str | list[str], output: str, shards: int = 4, val_fraction: float = 0.1,
          test_fraction: float = 0.1, max_pixels: int = decode.DEFAULT_MAX_PIXELS,
          tile_size: int = DEFAULT_TILE_SIZE, tile_stride: int | None = None,
          licences: dict[str, str] | None = None, command: str | None = None,
          clear_crops: Collection[str] = ()) -> dict[str, Any]:
    """Build the data set and return its manifest (also written to ``output``).

    Windows a mask rule leaves out are not trained on, but the val and test splits keep
    them (label -1), so a photo can be judged whole, as the scorer judges it.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or \
            val_fraction + test_fraction >= 1:
        raise ValueError("val and test fractions must be in [0, 1) and leave a train split")
    stride = tile_stride or default_stride(tile_size)
    source_list = [parse_source(s) for s in ([source] if isinstance(source, str) else source)]
    names = [s.name for s in source_list]
    if len(set(names)) != len(names):
        raise BuildError(f"two sources are named alike ({names}); name them NAME=PATH")
    unknown = sorted(set(licences or {}) - set(names))
    if unknown:
        raise BuildError(f"--licence names {unknown}, which no --source is called")
    masks = {s.name for s in source_list if s.kind == MASKS}
    not_masks = sorted(set(clear_crops) - masks)
    if not_masks:
        raise BuildError(f"--clear-crops names {not_masks}, which no mask source is called "
                         f"(mask sources: {', '.join(sorted(masks)) or 'none'})")
    source_list = [dataclasses.replace(s, licence=(licences or {}).get(s.name, s.licence))
                   for s in source_list]
    photos, errors, duplicates = collect(source_list, tile_size, stride, max_pixels,
                                         clear_crops)
    for src in source_list:
        if not any(p.source == src.name for p in photos):
            layout = (f"inside {list(CLASS_NAMES)} folders" if src.kind == FOLDER
                      else "with a matching mask")
            raise BuildError(f"{src.path}: no decodable image {layout}")
    splits, groups = assign_splits(photos, val_fraction, test_fraction)
    by_split: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for photo, split in zip(photos, splits):
        by_split[split] += [e for e in photo.examples
                            if split != "train" or e["label"] != EXCLUDED]
    tf.io.gfile.makedirs(output)
    labelled = [e for examples in by_split.values() for e in examples
                if e["label"] != EXCLUDED]
    manifest: dict[str, Any] = {
        "source": ",".join(s.path for s in source_list),
        "command": command,
        "sources": [{"name": s.name, "path": s.path, "kind": s.kind, "licence": s.licence,
                     "photos": sum(p.source == s.name for p in photos)} for s in source_list],
        "source_fingerprint": fingerprint(labelled),
        "class_names": list(CLASS_NAMES),
        "tile_size": tile_size if any(s.kind == MASKS for s in source_list) else None,
        "options": {"shards": shards, "val_fraction": val_fraction,
                    "test_fraction": test_fraction, "max_pixels": max_pixels,
                    "tile_size": tile_size, "tile_stride": stride,
                    "window_rule": f"Positive: crack in the central half; Negative: no crack "
                                   f"within {windows.DEFAULT_MARGIN} px of the window; "
                                   f"otherwise excluded; joint-only Negatives are hard"
                                   + (f"; in {', '.join(sorted(clear_crops))}, a photo "
                                      f"without a Negative window adds the largest square no "
                                      f"crack comes within {windows.CLEAR_MARGIN} px of, if at "
                                      f"least {windows.MIN_CLEAR_SIDE} px, scaled to a tile"
                                      if clear_crops else ""),
                    "split_rule": "per near-copy group, per source: groups in order of their "
                                  "first photo's sha256, each taking the split where the "
                                  "middle of its labelled examples falls"},
        "groups": groups,
        "counts": {}, "counts_by_source": {}, "shards": {}, "image_sizes": {},
        "errors": errors, "duplicates": duplicates,
    }
    remove_earlier_shards(output)
    for split, members in by_split.items():
        manifest["counts"][split] = _counts(members)
        manifest["counts_by_source"][split] = {
            name: _counts([e for e in members if e["source"] == name]) for name in names}
        manifest["shards"][split] = write_shards(members, output, split, shards) \
            if members else []
    sizes = Counter(f"{e['box'][2] - e['box'][0]}x{e['box'][3] - e['box'][1]}"
                    for e in labelled)
    manifest["image_sizes"] = dict(sizes.most_common())
    manifest["counts"]["rejected"] = len(errors)
    manifest["counts"]["duplicates"] = len(duplicates)
    with tf.io.gfile.GFile(posixpath.join(output, "manifest.json"), "w") as handle:
        json.dump(manifest, handle, indent=2)
    return manifest


def parser() -> argparse.ArgumentParser:
    p = cli.command_parser("training.build_dataset", __doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, action="append", metavar="[NAME=]SRC",
                   help="repeatable: a folder with Negative/ and Positive/ (or a .zip/.tar(.gz) "
                        "of it), or a folder with images/ and masks/; NAME (default: the "
                        "folder's name) labels its examples and its counts")
    p.add_argument("--output", required=True, help="folder for shards and manifest.json")
    p.add_argument("--shards", type=int, default=4, help="shards per split (default: 4)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of near-copy groups in validation (default: 0.1)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="share of near-copy groups in test (default: 0.1)")
    p.add_argument("--max-pixels", type=int, default=decode.DEFAULT_MAX_PIXELS,
                   help=f"refuse larger images (default: {decode.DEFAULT_MAX_PIXELS})")
    p.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE,
                   help=f"window side cut from mask sources, the scorer's tile "
                        f"(default: {DEFAULT_TILE_SIZE})")
    p.add_argument("--licence", action="append", default=[], metavar="NAME=TEXT",
                   help="repeatable: the licence of source NAME, recorded in the manifest and "
                        "in every model card trained on it (default: the Licence line of the "
                        "source's SOURCE.md, if any)")
    p.add_argument("--tile-stride", type=int,
                   help="largest distance between windows (default: 3/4 of the tile, as "
                        "the scorer)")
    p.add_argument("--clear-crops", action="append", default=[], metavar="NAME",
                   help="repeatable: in mask source NAME, a photo that gives no intact "
                        "window (a brick patch with a crack across it) gives the largest "
                        f"square no crack comes within {windows.CLEAR_MARGIN} px of, scaled "
                        "to a tile, as an intact example: for sources that otherwise show "
                        "the model no intact surface at all (default: none)")
    return p


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = cli.parse_args(p, argv)
    licences = dict(text.partition("=")[::2] for text in args.licence)
    if any(not name or not text for name, text in licences.items()):
        p.error("--licence takes NAME=TEXT")
    verbosity.configure(argv)
    command = "python -m training.build_dataset " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    with cli.one_line_errors("training.build_dataset", BuildError, sources.SourceError):
        manifest = build(args.source, args.output, args.shards, args.val_fraction,
                         args.test_fraction, args.max_pixels, args.tile_size,
                         args.tile_stride, licences, command, args.clear_crops)
    counts = manifest["counts"]
    for split in SPLITS:
        print(f"{split:>5}: {counts[split]['total']:6d} examples  "
              + "  ".join(f"{name} {counts[split][name]}" for name in CLASS_NAMES)
              + f"  (hard negatives {counts[split]['hard_negative']})")
        for name, by_source in manifest["counts_by_source"][split].items():
            print(f"         {name:<16}" + "  ".join(f"{c} {by_source[c]}"
                                                    for c in CLASS_NAMES))
    groups = manifest["groups"]
    print(f"rejected {counts['rejected']}, duplicates dropped {counts['duplicates']}; "
          f"{groups['near_copy_pairs']} near-copy pairs, largest group "
          f"{groups['largest_group']} photos; fingerprint "
          f"{manifest['source_fingerprint'][:16]}; manifest "
          f"{os.path.join(args.output, 'manifest.json')}")


if __name__ == "__main__":
    main()
