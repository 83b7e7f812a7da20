"""Tiles to crack probabilities with Beam's RunInference, on LiteRT or Keras 3.

Beam's stock TensorFlow handler imports ``tensorflow_hub`` and expects a SavedModel; the
exported model is a ``.keras`` file (plus its ``.tflite`` conversion), so this module has
its own small ``ModelHandler``s. RunInference loads the model once per worker process and
shares it across threads. LiteRT (XNNPACK) runs the same model ~2x faster on CPU.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
import threading
from typing import Any, Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import (KeyedModelHandler, ModelHandler, PredictionResult,
                                           RunInference)
from apache_beam.pvalue import TaggedOutput

from crackscan.cascade import crack_probabilities
from crackscan.model_card import ModelCard, ModelCardError
from crackscan.tflite_model import TFLiteClassifier  # imports LiteRT only when one is made
from pipeline.records import TileKey, TileScore, probability
from pipeline.workers import TILES_SCORED, count_here

SCORES, FAILED, SINGLE = "scores", "failed", "single"
# The field model the package ships (LiteRT file + card, see its card for how it was made).
SHIPPED_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_model")
LITERT, LITERT_INT8, KERAS = "litert", "litert-int8", "keras"
RUNTIMES = (LITERT_INT8, LITERT, KERAS)
# Not a --runtime: the float or int8 file, whichever each remote worker times faster
# (pipeline.runtime_choice).
LITERT_PER_WORKER = "litert-per-worker"
# Tiles per model call where the launcher cannot measure the workers' (pipeline.batch_size):
# XNNPACK runs MobileNetV2 ~10% faster per image at 8 than at 32 on several threads (a
# batch's activations stay in cache), while Keras gains up to 32 from fewer calls of its own
# per-call overhead.
DEFAULT_BATCH_SIZES = {LITERT_INT8: 8, LITERT: 8, KERAS: 32}


@dataclasses.dataclass(frozen=True)
class TileFailure:
    """What a tile's inference holds when the model raised on that tile alone."""

    reason: str


def _reason(exc: Exception) -> str:
    """The exception's type and text: the repr of TensorFlow's errors is often empty, their
    text says which op failed and why."""
    return f"{type(exc).__name__}: {exc}"


def litert_file(spec: ModelCard, int8: bool) -> tuple[str, str]:
    """``(uri, sha256)`` of the LiteRT file a run on ``spec`` executes: the int8 file or the
    float ``.tflite``; refused when the card lists none."""
    uri, sha256 = ((spec.int8_uri, spec.int8_sha256) if int8
                   else (spec.tflite_uri, spec.tflite_sha256))
    if uri is None or sha256 is None:
        raise ModelCardError(f"model {spec.version}: the model card lists no "
                             f"{'int8_file that passed its gate' if int8 else 'tflite_file'}")
    return uri, sha256


def read_checked(uri: str, sha256: str) -> bytes:
    """The bytes of a model file, checked again on the worker against the card's hash: the
    file may have been replaced since the launcher read the card."""
    with FileSystems.open(uri) as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelCardError(f"{uri}: content changed since the job started; it no longer "
                             f"matches model_card.json")
    return data


class TileModelHandler(ModelHandler[np.ndarray, PredictionResult, Any]):
    """Batches of equally sized RGB tiles to positive-class probabilities.

    Subclasses load a runtime's model; the runtime is imported when a worker loads it, not
    when the pipeline is built, so the launcher starts without TensorFlow or LiteRT.
    """

    def __init__(self, spec: ModelCard, batch_size: int) -> None:
        # Fixed-size batches: Beam's adaptive batching would start at one tile and feed the
        # model a new input shape on every growth step.
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self._spec = spec
        self._batches_split = Metrics.counter("crackscan", "batches_retried_tile_by_tile")
        self._tiles_failed = Metrics.counter("crackscan", "tiles_failed_alone")
        self._tiles_rescored = Metrics.counter("crackscan", "tiles_rescored_in_views")

    def predict(self, model: Any, tiles: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities, shape ``(batch, classes)``, for uint8 RGB tiles."""
        raise NotImplementedError

    def predict_views(self, model: Any, views: np.ndarray) -> np.ndarray:
        """:meth:`predict` for one tile's other views in a cascade: always the same count
        of them, which a runtime may keep its own plan for."""
        return self.predict(model, views)

    def run_inference(self, batch: Sequence[np.ndarray], model: Any,
                      inference_args: dict[str, Any] | None = None
                      ) -> list[PredictionResult]:
        """One result per tile: a probability, or a :class:`TileFailure` for a tile the
        model fails on even alone.

        A batch that raises is retried tile by tile, so a transient fault costs a slower
        batch and one bad tile costs only its own image, not the 31 others beside it.
        Each worker process counts the tiles it ran, to show how a run was spread.
        """
        count_here(TILES_SCORED, len(batch))
        try:
            positive = self._positive(model, batch)
        except Exception as exc:  # the model's own errors have no common base class
            self._batches_split.inc()
            logging.warning("model failed on a batch of %d tiles (%s); retrying tile by tile",
                            len(batch), _reason(exc))
            return [self._alone(model, tile) for tile in batch]
        return [PredictionResult(tile, float(p), model_id=self._spec.version)
                for tile, p in zip(batch, positive)]

    def _positive(self, model: Any, batch: Sequence[np.ndarray]) -> np.ndarray:
        """The card's cascade, where it has one, re-scores the unsure tiles in more views."""
        positive, rescored = crack_probabilities(
            lambda tiles: self.predict(model, tiles), batch, self._spec.positive_index,
            self._spec.cascade, lambda views: self.predict_views(model, views))
        if rescored:
            self._tiles_rescored.inc(rescored)
        return positive

    def _alone(self, model: Any, tile: np.ndarray) -> PredictionResult:
        try:
            result: float | TileFailure = float(self._positive(model, [tile])[0])
        except Exception as exc:
            self._tiles_failed.inc()
            result = TileFailure(f"model failed on a tile of this image: {_reason(exc)}")
        return PredictionResult(tile, result, model_id=self._spec.version)

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        # The default pickles the whole batch just to measure it.
        return sum(tile.nbytes for tile in batch)

    def get_metrics_namespace(self) -> str:
        return "crackscan_inference"


class KerasTileModelHandler(TileModelHandler):
    """``model.keras`` through Keras' ``predict_on_batch``."""

    def load_model(self) -> Any:
        """Copies the model to local disk (Keras cannot open ``gs://``), hash checked."""
        import keras

        data = read_checked(self._spec.model_uri, self._spec.model_sha256)
        handle, path = tempfile.mkstemp(suffix=".keras")
        try:
            with os.fdopen(handle, "wb") as local:
                local.write(data)
            # Explicit, not left to Keras' default: a Lambda layer's marshalled Python
            # must never run on a worker. (Keras lets a thread's global
            # enable_unsafe_deserialization() override it; read_card refuses such models
            # on the launcher, and read_checked pins the bytes it checked.)
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        finally:
            os.unlink(path)

    def predict(self, model: Any, tiles: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(model.predict_on_batch(np.stack(tiles, dtype=np.float32)))


class InterpreterPerThread:
    """The model RunInference shares across a worker's threads: one LiteRT interpreter per
    thread, created on its first batch, since an interpreter must not be used by two
    threads at once. All of them run the same verified in-memory copy of the file."""

    def __init__(self, content: bytes, threads: int) -> None:
        self._content = content
        self._threads = threads
        self._local = threading.local()
        # A bad file fails here, when the model is loaded, not on its first batch.
        self._local.classifiers = {"tiles": TFLiteClassifier(content, threads)}

    def predict(self, tiles: Sequence[np.ndarray], role: str = "tiles") -> np.ndarray:
        """``role`` names the interpreter: a cascade's views get their own, so neither
        re-plans its tensors for the other's batch size."""
        classifiers = getattr(self._local, "classifiers", None)
        if classifiers is None:
            classifiers = self._local.classifiers = {}
        if role not in classifiers:
            classifiers[role] = TFLiteClassifier(self._content, self._threads)
        return classifiers[role].predict(tiles)


class LiteRTTileModelHandler(TileModelHandler):
    """``model.tflite`` (or with ``int8``, the card's int8 file) on the LiteRT interpreter
    with XNNPACK, ``threads`` threads each.

    Float rows carry the same model version as with Keras: the file is a checked conversion
    of the card's ``model.keras`` (probabilities within 1e-4), not another model. Int8 rows
    carry the version of ``ModelCard.for_int8``, which the caller passes in ``spec``.
    """

    def __init__(self, spec: ModelCard, batch_size: int, threads: int,
                 int8: bool = False) -> None:
        super().__init__(spec, batch_size)
        self._uri, self._sha256 = litert_file(spec, int8)
        self._threads = threads

    def load_model(self) -> InterpreterPerThread:
        """The interpreter reads the file from memory: no local copy on disk is needed,
        and the bytes it runs are the ones whose hash was checked."""
        return InterpreterPerThread(read_checked(self._uri, self._sha256), self._threads)

    def predict(self, model: InterpreterPerThread, tiles: Sequence[np.ndarray]) -> np.ndarray:
        return model.predict(tiles)

    def predict_views(self, model: InterpreterPerThread, views: np.ndarray) -> np.ndarray:
        return model.predict(views, role="views")


def tile_model_handler(spec: ModelCard, batch_size: int | None, runtime: str,
                       threads: int) -> TileModelHandler:
    """The runtime's handler; ``batch_size`` None takes the runtime's default."""
    if runtime not in (*RUNTIMES, LITERT_PER_WORKER):
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {RUNTIMES}")
    if runtime == LITERT_PER_WORKER:
        # That module builds on this one's handlers, so it is imported when needed.
        from pipeline.runtime_choice import WorkerChoosesTileModelHandler

        return WorkerChoosesTileModelHandler(spec, batch_size or DEFAULT_BATCH_SIZES[LITERT],
                                             threads)
    batch_size = batch_size or DEFAULT_BATCH_SIZES[runtime]
    if runtime in (LITERT, LITERT_INT8):
        return LiteRTTileModelHandler(spec, batch_size, threads, int8=runtime == LITERT_INT8)
    return KerasTileModelHandler(spec, batch_size)


class KeyedTileModelHandler(KeyedModelHandler):
    """Beam's keyed handler, less its batch size metric's cost: it pickles every batch's
    keys to measure them, and a one-tile image's key carries the image's info and
    metadata (58 us an image at batch size 1, for a metric). The keys' bytes are left out."""

    def __init__(self, handler: TileModelHandler) -> None:
        super().__init__(handler)
        self._tiles = handler

    def get_num_bytes(self, batch: Sequence[tuple[TileKey, np.ndarray]]) -> int:
        return self._tiles.get_num_bytes([tile for _, tile in batch])


def _tile_score(key: TileKey, result: PredictionResult
                ) -> Iterator[tuple[str, TileScore] | TaggedOutput]:
    if isinstance(result.inference, TileFailure):
        yield TaggedOutput(FAILED, (key.uri, result.inference.reason))
        return
    score = TileScore(key.tile, key.box, probability(result.inference), result.model_id)
    if key.info is not None:
        yield TaggedOutput(SINGLE, (key.info, score))
    else:
        yield key.uri, score


def _failed_images(failure: tuple[list[tuple[TileKey, np.ndarray]], tuple]
                   ) -> Iterator[tuple[str, str]]:
    """One ``(uri, reason)`` per image with a tile in a batch that failed outside the model
    (the model's own errors are caught tile by tile before they get here)."""
    batch, (_, _, trace) = failure
    uris = sorted({key.uri for key, _ in batch})
    logging.warning("inference failed on a batch of %d tiles from %d images: %s",
                    len(batch), len(uris), "".join(trace))
    reason = trace[-1].strip()  # the exception's own text, as _reason gives it
    for uri in uris:
        yield uri, (f"inference failed on a batch of {len(batch)} tiles holding tiles of "
                    f"this image: {reason}")


class ScoreTiles(beam.PTransform):
    """``(TileKey, pixels)`` to ``{"scores": (uri, TileScore), "single": (ImageInfo,
    TileScore), "failed": (uri, reason)}``; ``single`` holds the images of one tile, whose
    key carries their info.

    Nothing that fails here fails the job: a tile the model fails on alone fails its image
    only, and a batch that fails outside the model fails the images with a tile in it. An
    image with any failed tile is reported as failed, never scored on part of its tiles.
    """

    def __init__(self, handler: TileModelHandler) -> None:
        super().__init__()
        self._handler = KeyedTileModelHandler(handler)

    def expand(self, tiles: beam.PCollection) -> dict[str, beam.PCollection]:
        results, dead_letters = (
            tiles | "RunInference" >> RunInference(self._handler).with_exception_handling())
        per_tile = results | "ByImage" >> beam.FlatMapTuple(_tile_score).with_outputs(
            FAILED, SINGLE, main=SCORES)
        failed_batches = dead_letters.failed_inferences | "FailedBatches" >> beam.FlatMap(
            _failed_images)
        return {
            SCORES: per_tile[SCORES],
            SINGLE: per_tile[SINGLE],
            FAILED: (per_tile[FAILED], failed_batches) | "AllFailed" >> beam.Flatten(),
        }
