"""The model card: everything a scorer needs to know about an exported model, in one file.

``model_card.json`` sits beside ``model.keras``; the scoring pipeline reads class names,
input size, tile size and the decision threshold from it instead of taking them as flags
that could drift from what the model was trained and calibrated with.

Reading a card also checks the folder holds this project's own export and nothing else: a
Keras 3 ``.keras`` archive without Python code in it (no SavedModel, HDF5 or ``Lambda``
layer, which would run code on every worker), a LiteRT flatbuffer, file names that stay
inside the folder, field types the scorer can use. All of it is checked on the launcher,
so a wrong folder stops the run with one clear message before any worker starts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import re
import zipfile
from typing import Any, Callable, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from crackscan.cascade import Cascade
from crackscan.verdict import photo_probability

MODEL_FILE = "model.keras"
# Same model converted for the LiteRT runtime; optional (older model folders lack it).
TFLITE_FILE = "model.tflite"
# The same model quantized to int8 (training.export_tflite --int8); listed in the card only
# when it passed its accuracy gate against the float model (the card's int8.gate).
INT8_FILE = "model_int8.tflite"
CARD_FILE = "model_card.json"
REQUIRED_FIELDS = ("class_names", "positive_class", "input_size", "tile_size", "threshold")
# Every Keras 3 .keras archive holds both; the weights sit beside them in model.weights.h5.
KERAS_ARCHIVE_ENTRIES = ("metadata.json", "config.json")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
TFLITE_IDENTIFIER = b"TFL3"  # bytes 4-8 of every LiteRT flatbuffer
# Serialized classes that carry Python code (a Lambda layer's function is marshalled
# bytecode). Keras' safe mode refuses them when a worker loads the model; refusing them
# here says so before the job starts.
CODE_CLASSES = frozenset({"Lambda", "__lambda__"})
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
INT8_VERSION_SUFFIX = "-int8"


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _sha256_hex(value: Any) -> bool:
    return isinstance(value, str) and bool(SHA256_HEX.fullmatch(value))


def plain_file_name(name: Any) -> bool:
    """A bare file name, which ``join`` keeps inside the model folder: no folder part, no
    ``..``, not absolute. Names from the card are data a tampered card controls."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and not any(character in name for character in "/\\\0"))


# Type of each field the scorer reads: its check and what the check asks for.
FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "class_names": (lambda value: isinstance(value, list)
                    and all(isinstance(name, str) for name in value), "a list of strings"),
    "positive_class": (lambda value: isinstance(value, str), "a string"),
    "input_size": (_positive_int, "a positive integer"),
    "tile_size": (_positive_int, "a positive integer"),
    "threshold": (lambda value: isinstance(value, (int, float))
                  and not isinstance(value, bool), "a number"),
    "model_sha256": (_sha256_hex, "a sha256 hex digest"),
    "tflite_sha256": (_sha256_hex, "a sha256 hex digest"),
    # The scorer loads model.keras whatever the card says; a card naming another file
    # describes a model that is not the one that would run.
    "model_file": (lambda value: value == MODEL_FILE, repr(MODEL_FILE)),
    "tflite_file": (plain_file_name, "a file name inside the model folder (no '/', '\\' "
                                     "or '..')"),
    "int8_sha256": (_sha256_hex, "a sha256 hex digest"),
    "int8_file": (plain_file_name, "a file name inside the model folder (no '/', '\\' "
                                   "or '..')"),
}
# The LiteRT files a card may list: (file field, its sha256 field).
LISTED_TFLITE_FIELDS = (("tflite_file", "tflite_sha256"), ("int8_file", "int8_sha256"))


class ModelCardError(ValueError):
    """A model directory that cannot be scored with: missing, incomplete or tampered."""


def join(directory: str, name: str) -> str:
    return FileSystems.join(directory, name) if "://" in directory else posixpath.join(
        directory, name)


def write_card(directory: str, card: dict[str, Any]) -> str:
    path = join(directory, CARD_FILE)
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(card, indent=2, sort_keys=True).encode() + b"\n")
    return path


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with FileSystems.open(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked_sha256(path: str) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:  # a folder where a file should be, unreadable...
        raise ModelCardError(f"{path}: cannot be read as a file: {exc}") from None


def _class_names(config: Any) -> set[str]:
    """Every ``class_name`` anywhere in a Keras config."""
    if isinstance(config, dict):
        found = {config["class_name"]} if isinstance(config.get("class_name"), str) else set()
        return found.union(*(_class_names(value) for value in config.values()))
    if isinstance(config, list):
        return set().union(*(_class_names(value) for value in config))
    return set()


def check_keras_file(model_path: str) -> None:
    """Refuses anything but a Keras 3 ``.keras`` archive free of Python code.

    Keras would guess the format from the content and load a SavedModel or an HDF5 file
    too; crackscan exports and verifies only ``.keras`` archives, so nothing else is run.
    """
    if FileSystems.exists(join(model_path, "saved_model.pb")):
        raise ModelCardError(f"{model_path}: a TensorFlow SavedModel folder, not a Keras "
                             f".keras archive; crackscan scores only the model.keras that "
                             f"training.train exports")
    try:
        with FileSystems.open(model_path,
                              compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                raise ModelCardError(f"{model_path}: an HDF5 (.h5) model, not a Keras .keras "
                                     f"archive; crackscan scores only the model.keras that "
                                     f"training.train exports")
            handle.seek(0)
            with zipfile.ZipFile(handle) as archive:
                missing = [name for name in KERAS_ARCHIVE_ENTRIES
                           if name not in archive.namelist()]
                if missing:
                    raise ModelCardError(f"{model_path}: a zip file but not a Keras .keras "
                                         f"archive, it lacks {missing}")
                config_json = archive.read("config.json")
    except zipfile.BadZipFile:
        raise ModelCardError(f"{model_path}: not a Keras .keras archive (not a zip "
                             f"file)") from None
    except OSError as exc:
        raise ModelCardError(f"{model_path}: cannot be read as a file: {exc}") from None
    try:
        config = json.loads(config_json)
    except ValueError as exc:
        raise ModelCardError(f"{model_path}: config.json is not valid JSON: {exc}") from None
    code = sorted(_class_names(config) & CODE_CLASSES)
    if code:
        raise ModelCardError(f"{model_path}: holds {code}, Python code that loading the "
                             f"model would run; crackscan exports no such layer and does "
                             f"not load one")


def check_tflite_file(tflite_path: str) -> None:
    """Refuses a ``.tflite`` that is not a LiteRT flatbuffer, before an interpreter sees it."""
    try:
        with FileSystems.open(tflite_path,
                              compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelCardError(f"{tflite_path}: cannot be read as a file: {exc}") from None
    if head[4:8] != TFLITE_IDENTIFIER:
        raise ModelCardError(f"{tflite_path}: not a LiteRT (.tflite) model")


def _check_fields(card_path: str, card: Any) -> None:
    if not isinstance(card, dict):
        raise ModelCardError(f"{card_path}: must hold a JSON object, not a "
                             f"{type(card).__name__}")
    required = REQUIRED_FIELDS + tuple(sha for name, sha in LISTED_TFLITE_FIELDS
                                       if name in card)
    missing = [field for field in required if field not in card]
    if missing:
        raise ModelCardError(f"{card_path}: missing fields {missing}")
    for field, (valid, wanted) in FIELD_TYPES.items():
        if field in card and not valid(card[field]):
            raise ModelCardError(f"{card_path}: {field} must be {wanted}, got "
                                 f"{card[field]!r:.80}")
    if "int8_file" in card and not int8_gate_passed(card):
        raise ModelCardError(f"{card_path}: lists int8_file {card['int8_file']!r} but its "
                             f"int8.gate did not pass; only an int8 model that passed is "
                             f"listed for use")


def int8_gate_passed(card: dict[str, Any]) -> bool:
    """Whether the card records an int8 accuracy gate that passed."""
    report = card.get("int8")
    gate = report.get("gate") if isinstance(report, dict) else None
    return isinstance(gate, dict) and gate.get("passed") is True


def _check_listed_file(directory: str, card: dict[str, Any], name_field: str,
                       sha_field: str) -> None:
    """The LiteRT file the card lists under ``name_field`` exists, is the one hashed in
    ``sha_field`` and is a LiteRT flatbuffer."""
    path = join(directory, card[name_field])
    if not FileSystems.exists(path):
        raise ModelCardError(f"{directory}: {CARD_FILE} lists {card[name_field]}, which is "
                             f"missing")
    if _checked_sha256(path) != card[sha_field]:
        raise ModelCardError(f"{path}: content does not match the {sha_field} recorded in "
                             f"{CARD_FILE}; it was changed after export")
    check_tflite_file(path)


def read_card(directory: str) -> dict[str, Any]:
    """The card of a model directory, checked against the model files it describes.

    ``model.keras`` may be left out where the card lists a ``.tflite``: a shipped model
    needs only the file it runs (a few MB instead of the Keras archive's 10+).
    """
    card_path, model_path = join(directory, CARD_FILE), join(directory, MODEL_FILE)
    if not FileSystems.exists(card_path):
        raise ModelCardError(f"{directory}: not a crackscan model directory, {CARD_FILE} is "
                             f"missing")
    try:
        with FileSystems.open(card_path) as handle:
            card = json.loads(handle.read())
    except OSError as exc:
        raise ModelCardError(f"{card_path}: cannot be read as a file: {exc}") from None
    except ValueError as exc:
        raise ModelCardError(f"{card_path}: not valid JSON: {exc}") from None
    _check_fields(card_path, card)
    if FileSystems.exists(model_path):
        check_keras_file(model_path)
        expected = card.get("model_sha256")
        if expected and _checked_sha256(model_path) != expected:
            raise ModelCardError(f"{model_path}: content does not match the sha256 recorded "
                                 f"in {CARD_FILE}; the model was changed after export")
    elif "tflite_file" not in card:
        raise ModelCardError(f"{directory}: not a crackscan model directory, {MODEL_FILE} is "
                             f"missing")
    for name_field, sha_field in LISTED_TFLITE_FIELDS:
        if name_field in card:
            _check_listed_file(directory, card, name_field, sha_field)
    return card


def has_keras_model(directory: str) -> bool:
    return FileSystems.exists(join(directory, MODEL_FILE))


def model_version(card: dict[str, Any]) -> str:
    """Short content hash that names the model in every prediction row."""
    return card["model_sha256"][:12]


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """A model folder's card as scoring uses it: typed, checked once on the launcher, with
    the files it names resolved to where they are."""

    model_uri: str | None  # None: a LiteRT-only folder, such as the shipped model
    model_sha256: str
    version: str
    class_names: tuple[str, ...]
    positive_class: str
    negative_class: str
    threshold: float
    tile_size: int
    tflite_uri: str | None = None  # same model for LiteRT, when the card lists one
    tflite_sha256: str | None = None
    tiles_needed: int = 1  # the card's photo rule; cards without one flag on any tile
    int8_uri: str | None = None  # the int8 file, when the card lists one that passed its gate
    int8_sha256: str | None = None
    photo_threshold: float | None = None  # the photo rule's own, where it has one
    cascade: Cascade | None = None  # unsure tiles re-scored in more views, where it has one

    @property
    def photo_cutoff(self) -> float:
        """What a photo's crack probability is held against: the photo rule's threshold,
        chosen on photos of a survey's size, or the tile threshold on cards without one."""
        return self.threshold if self.photo_threshold is None else self.photo_threshold

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    @classmethod
    def read(cls, model_dir: str) -> "ModelCard":
        """The folder's card, read and checked against its files by :func:`read_card`."""
        return cls.from_card(model_dir, read_card(model_dir))

    @classmethod
    def from_card(cls, model_dir: str, card: dict[str, Any]) -> "ModelCard":
        """The typed view of a card's fields; refuses values that would make every row
        wrong rather than fail once scored. It reads no file: :meth:`read` is the launcher's
        way in, this one lets a worker's own checks be tested apart from the launcher's."""
        names = tuple(card["class_names"])
        positive = card["positive_class"]
        if len(names) != 2 or positive not in names:
            raise ModelCardError(f"{model_dir}: class_names {list(names)} must name two "
                                 f"classes, one of them the positive class {positive!r}")
        threshold = float(card["threshold"])
        if not 0.0 <= threshold <= 1.0:
            raise ModelCardError(f"{model_dir}: threshold {threshold} is not a probability")
        if "model_sha256" not in card:
            raise ModelCardError(f"{model_dir}: model_sha256 is missing; every prediction "
                                 f"row names the model version derived from it")
        tiles_needed = card.get("photo_rule", {}).get("tiles_needed", 1)
        if not isinstance(tiles_needed, int) or isinstance(tiles_needed, bool) or \
                tiles_needed < 1:
            raise ModelCardError(f"{model_dir}: photo_rule.tiles_needed must be a positive "
                                 f"integer, got {tiles_needed!r:.40}")
        photo_threshold = card.get("photo_rule", {}).get("photo_threshold")
        if photo_threshold is not None and (
                not isinstance(photo_threshold, (int, float)) or isinstance(photo_threshold, bool)
                or not threshold <= photo_threshold <= 1.0):
            raise ModelCardError(f"{model_dir}: photo_rule.photo_threshold must be a number "
                                 f"from the threshold {threshold} to 1, got "
                                 f"{photo_threshold!r:.40}")
        try:
            cascade = (None if card.get("cascade") is None
                       else Cascade.from_card(card["cascade"], model_dir))
        except ValueError as exc:
            raise ModelCardError(str(exc)) from None
        return cls(model_uri=join(model_dir, MODEL_FILE) if has_keras_model(model_dir)
                   else None, model_sha256=card["model_sha256"],
                   version=model_version(card), class_names=names, positive_class=positive,
                   negative_class=next(name for name in names if name != positive),
                   threshold=threshold, tile_size=int(card["tile_size"]),
                   tflite_uri=join(model_dir, card["tflite_file"])
                   if "tflite_file" in card else None,
                   tflite_sha256=card.get("tflite_sha256"), tiles_needed=tiles_needed,
                   int8_uri=join(model_dir, card["int8_file"]) if "int8_file" in card
                   else None, int8_sha256=card.get("int8_sha256"),
                   photo_threshold=None if photo_threshold is None else float(photo_threshold),
                   cascade=cascade)

    def for_int8(self) -> "ModelCard":
        """The card as a run on the int8 file uses it. Its rows name their own model
        version: the int8 file may change a few verdicts (within its gate), so its rows
        must not pass for the float model's, nor be reused by ``--skip-scored`` as such."""
        return dataclasses.replace(self, version=f"{self.version}{INT8_VERSION_SUFFIX}")

    def photo_probability(self, tile_probabilities: Sequence[float]) -> float:
        return photo_probability(tile_probabilities, self.tiles_needed)

    def label(self, crack_probability: float) -> str:
        return (self.positive_class if crack_probability >= self.photo_cutoff
                else self.negative_class)
