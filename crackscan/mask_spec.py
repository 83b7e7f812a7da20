"""The crack-mask model a model card lists: its ``mask_model`` section, read and checked.

A classifier's card may list a second LiteRT file beside ``model.tflite``, a per-pixel crack
model that the scorer runs on the tiles the classifier flags, to measure crack length and
width (``pipeline.masks``). Its section::

    "mask_model": {"file": "mask_model.tflite", "sha256": "<hex>", "tile_size": 224,
                   "threshold": 0.5, "tolerance_px": 2, "training_sources": [...], ...}

The file takes float32 ``[N, S, S, 3]`` RGB 0-255 tiles of the classifier's own tile size S
(it is run on the classifier's tiles, cut once) and gives float32 ``[N, S, S, 1]`` crack
probabilities; a pixel is crack at ``threshold`` or above. Everything here is checked on the
launcher so a wrong file stops the run before any worker starts, naming the file and the
reason; a card without the section has no mask model, which is no error (older models).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from apache_beam.io.filesystems import FileSystems

from crackscan.model_card import (CARD_FILE, SHA256_HEX, ModelCardError, check_tflite_file,
                                  file_sha256, join, plain_file_name)

MASK_SECTION = "mask_model"
REQUIRED_FIELDS = ("file", "sha256", "tile_size", "threshold")


class MaskSpecError(ModelCardError):
    """A card's ``mask_model`` section that cannot be run: the run stops before it starts."""


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """The mask model as scoring runs it: where its file is, its hash and its threshold."""

    uri: str
    sha256: str
    tile_size: int
    threshold: float
    file: str

    @property
    def version(self) -> str:
        """First 12 hex digits of the file's sha256, as a classifier's version is named."""
        return self.sha256[:12]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def from_section(model_dir: str, section: Any, classifier_tile_size: int) -> MaskSpec:
    """The typed section, its values checked; reads no file (see :func:`read_mask_spec`)."""
    where = f"{join(model_dir, CARD_FILE)}: {MASK_SECTION}"
    if not isinstance(section, dict):
        raise MaskSpecError(f"{where} must be a JSON object, not a {type(section).__name__}")
    missing = [field for field in REQUIRED_FIELDS if field not in section]
    if missing:
        raise MaskSpecError(f"{where} lacks {missing}")
    if not plain_file_name(section["file"]):
        raise MaskSpecError(f"{where}.file must be a file name inside the model folder (no "
                            f"'/', '\\' or '..'), got {section['file']!r:.80}")
    if not isinstance(section["sha256"], str) or not SHA256_HEX.fullmatch(section["sha256"]):
        raise MaskSpecError(f"{where}.sha256 must be a sha256 hex digest, got "
                            f"{section['sha256']!r:.80}")
    tile_size = section["tile_size"]
    if tile_size != classifier_tile_size or not isinstance(tile_size, int) or isinstance(
            tile_size, bool):
        # The mask model is run on the classifier's tiles: those it flags and their
        # neighbours, cut by the same plan.
        raise MaskSpecError(f"{where}.tile_size {tile_size!r:.20} is not the classifier's "
                            f"tile_size {classifier_tile_size}: the mask model runs on the "
                            f"classifier's tiles")
    threshold = section["threshold"]
    if not _number(threshold) or not 0.0 < threshold <= 1.0:
        raise MaskSpecError(f"{where}.threshold must be a pixel probability above 0 and at "
                            f"most 1, got {threshold!r:.40}")
    return MaskSpec(uri=join(model_dir, section["file"]), sha256=section["sha256"],
                    tile_size=int(tile_size), threshold=float(threshold),
                    file=section["file"])


def read_mask_spec(model_dir: str, classifier_tile_size: int) -> MaskSpec | None:
    """The folder's mask model, checked against its file (present, the hashed bytes, a
    LiteRT flatbuffer); None where the card lists none."""
    card_path = join(model_dir, CARD_FILE)
    try:
        with FileSystems.open(card_path) as handle:
            card = json.loads(handle.read())
    except (OSError, ValueError) as exc:
        raise MaskSpecError(f"{card_path}: cannot be read: {exc}") from None
    if not isinstance(card, dict) or MASK_SECTION not in card:
        return None
    spec = from_section(model_dir, card[MASK_SECTION], classifier_tile_size)
    if not FileSystems.exists(spec.uri):
        raise MaskSpecError(f"{spec.uri}: listed as {MASK_SECTION}.file in {CARD_FILE}, "
                            f"but missing")
    try:
        digest = file_sha256(spec.uri)
    except OSError as exc:
        raise MaskSpecError(f"{spec.uri}: cannot be read as a file: {exc}") from None
    if digest != spec.sha256:
        raise MaskSpecError(f"{spec.uri}: content does not match {MASK_SECTION}.sha256 in "
                            f"{CARD_FILE}; it was changed after export")
    check_tflite_file(spec.uri)
    return spec


def check_shapes(spec: MaskSpec, input_shape: tuple[int, ...],
                 output_shape: tuple[int, ...]) -> None:
    """Refuses a file whose tensors are not the contract's: ``[N, S, S, 3]`` in and
    ``[N, S, S, 1]`` out (N dynamic, -1)."""
    size = spec.tile_size
    wanted_in, wanted_out = (-1, size, size, 3), (-1, size, size, 1)
    if tuple(input_shape) != wanted_in or tuple(output_shape) != wanted_out:
        raise MaskSpecError(f"{spec.uri}: takes {list(input_shape)} and gives "
                            f"{list(output_shape)}; a mask model takes {list(wanted_in)} "
                            f"RGB tiles and gives {list(wanted_out)} crack probabilities")
