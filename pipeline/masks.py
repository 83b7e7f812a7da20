"""Where the crack runs, how long and how wide: the card's mask model on the scored images.

An inspector grades a crack by its width, so each image the classifier flagged gets a crack
mask and the mask's length and widths (``crackscan.crack_measure``), in pixels and, where
the photo's scale is known, millimetres. The cost follows the cracks, not the photos: the
mask model runs only on the tiles at or above the card's tile threshold and their
neighbours (``crackscan.crack_mask``); an image with no such tile is not read again and its
measurements stay empty, as they are where the mask finds no crack pixel.

    scored images -> flagged? -> read again, decode, cut the chosen tiles (grouped by the
    file or archive that holds them) -> RunInference (mask model, LiteRT) -> packed tile
    masks -> grouped by image -> stitched, measured, PNG written -> rows

The tiles' pixels are not carried from scoring: shuffling every tile of a survey to find
the few a mask needs would cost more than reading the flagged photos again. The mask file is
read and checked against the card's sha256 on every worker that loads it, as the
classifier's is. An image whose mask cannot be made (read again, decoded, run) is an error
row at stage ``mask``, one whose PNG cannot be written at stage ``write-mask``: never a row
with its measurements silently empty, never a lost row.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import (KeyedModelHandler, ModelHandler, PredictionResult,
                                           RunInference)
from apache_beam.pvalue import TaggedOutput

from crackscan.crack_mask import measure_mask, pack, png, preview, stitch, tiles_to_mask
from crackscan.crack_measure import CrackMeasurement
from crackscan.decode import decode_rgb
from crackscan.mask_spec import MaskSpec, check_shapes
from crackscan.model_card import join
from crackscan.tiles import TilePlan, plan_tiles
from crackscan.tflite_model import TFLiteClassifier
from pipeline.file_names import mask_file_name
from pipeline.inference import InterpreterPerThread, read_checked
from pipeline.records import (MASK_COLUMN, MASK_FOLDER, MASK_STAGE, MEASUREMENT_DECIMALS,
                              WRITE_MASK_STAGE, ScoredImage, error_row)
from pipeline.reread import container, photo_bytes
from pipeline.run_config import RunConfig
from pipeline.summary import write_atomically

SCORED, ERRORS, FLAGGED, JOBS, TILES = "scored", "errors", "flagged", "jobs", "tiles"
NAMESPACE = "crackscan"


class MaskTileKey(NamedTuple):
    uri: str
    tile: int


class MaskJob(NamedTuple):
    """A flagged image on its way to its mask: the verdict, its tile plan (as scoring cut
    it) and the tiles the mask model runs on."""

    image: ScoredImage
    plan: TilePlan
    tiles: tuple[int, ...]


def mask_path(uri: str) -> str:
    """The mask PNG's path relative to the output, as the row's ``mask`` column holds it."""
    return f"{MASK_FOLDER}/{mask_file_name(uri)}"


def measurement_columns(measurement: CrackMeasurement, gsd_mm: float | None
                        ) -> dict[str, float | None]:
    """The row's measurement columns, rounded (``MEASUREMENT_DECIMALS``); all empty where
    the mask holds no crack pixel."""
    if measurement.width_max_px is None:
        return dict.fromkeys(measurement.columns())
    return {name: None if value is None else
            round(value, MEASUREMENT_DECIMALS[name.rsplit("_", 1)[1]])
            for name, value in measurement.columns(gsd_mm).items()}


class MaskModelHandler(ModelHandler[np.ndarray, PredictionResult, InterpreterPerThread]):
    """Batches of tiles to their crack masks, thresholded on the worker and packed to bits
    (``crackscan.crack_mask.pack``): what travels on to the stitching is 1/32 of the
    probabilities' bytes, and exactly what their maximum over overlaps decides."""

    def __init__(self, mask: MaskSpec, batch_size: int, threads: int) -> None:
        # Fixed-size batches, as the classifier's: each growth step would re-plan tensors.
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self._mask = mask
        self._threads = threads
        self._tiles = Metrics.counter(NAMESPACE, "mask_tiles")

    def load_model(self) -> InterpreterPerThread:
        """The checked bytes, refused here too if their tensors are not the contract's."""
        content = read_checked(self._mask.uri, self._mask.sha256)
        probe = TFLiteClassifier(content, 1)
        check_shapes(self._mask, probe.input_shape, probe.output_shape)
        return InterpreterPerThread(content, self._threads)

    def run_inference(self, batch: Sequence[np.ndarray], model: InterpreterPerThread,
                      inference_args: dict[str, Any] | None = None
                      ) -> list[PredictionResult]:
        self._tiles.inc(len(batch))
        probabilities = model.predict(batch)
        return [PredictionResult(tile, pack(p, self._mask.threshold),
                                 model_id=self._mask.version)
                for tile, p in zip(batch, probabilities)]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(tile.nbytes for tile in batch)

    def get_metrics_namespace(self) -> str:
        return "crackscan_masks"


class ChooseMaskTilesFn(beam.DoFn):
    """A scored image to its :class:`MaskJob` keyed by the file that holds it (tagged
    ``flagged``), or, with no tile at the threshold, to itself with nothing to measure."""

    def __init__(self, threshold: float, tile_size: int, stride: int, max_pixels: int) -> None:
        self._threshold = threshold
        self._tile_size = tile_size
        self._stride = stride
        self._max_pixels = max_pixels

    def process(self, image: ScoredImage) -> Iterator[ScoredImage | TaggedOutput]:
        row = image.row
        plan = plan_tiles(row["width"], row["height"], self._tile_size, self._stride,
                          self._max_pixels)
        scores = [tile.crack_probability for tile in sorted(image.tiles)]
        chosen = tiles_to_mask(plan, scores, self._threshold)
        if chosen:
            yield TaggedOutput(FLAGGED, (container(row["uri"]), MaskJob(image, plan, chosen)))
        else:
            yield image


class CutMaskTilesFn(beam.DoFn):
    """``(file, [MaskJob])`` to the chosen tiles' pixels keyed by :class:`MaskTileKey`, and
    each job keyed by uri (tagged ``jobs``, before its tiles), or an error row at stage
    ``mask`` for a photo that cannot be read, is no longer the bytes scored, or does not
    decode as it did."""

    def __init__(self, max_pixels: int) -> None:
        self._max_pixels = max_pixels
        self._failed = Metrics.counter(NAMESPACE, "failed_mask")

    def process(self, grouped: tuple[str, Iterable[MaskJob]]
                ) -> Iterator[tuple[MaskTileKey, np.ndarray] | TaggedOutput]:
        container_uri, jobs = grouped
        by_uri = {job.image.row["uri"]: job for job in jobs}
        for uri, data in photo_bytes(container_uri, set(by_uri)):
            job = by_uri[uri]
            try:
                canvas = self._canvas(job, data)
            except Exception as exc:  # one photo's mask must not cost the others
                self._failed.inc()
                logging.warning("crack mask: %s: %s: %s", uri, type(exc).__name__, exc)
                yield TaggedOutput(ERRORS, error_row(
                    uri, MASK_STAGE, f"read again for its crack mask: "
                                     f"{type(exc).__name__}: {exc}"))
                continue
            yield TaggedOutput(JOBS, (uri, job))
            size, chosen = job.plan.tile_size, set(job.tiles)
            for index, x0, y0 in job.plan.origins():
                if index in chosen:
                    yield MaskTileKey(uri, index), canvas[y0:y0 + size, x0:x0 + size].copy()

    def _canvas(self, job: MaskJob, data: bytes | Exception) -> np.ndarray:
        if isinstance(data, Exception):
            raise data
        if hashlib.sha256(data).hexdigest() != job.image.row["sha256"]:
            raise ValueError("its content changed since it was scored")
        rgb = decode_rgb(data, self._max_pixels)
        if rgb.shape[:2] != (job.plan.height, job.plan.width):
            raise ValueError(f"decodes to {rgb.shape[1]}x{rgb.shape[0]}, scored as "
                             f"{job.plan.width}x{job.plan.height}")
        return job.plan.canvas(rgb)


def _tile_mask(keyed: tuple[MaskTileKey, PredictionResult]
               ) -> tuple[str, tuple[int, np.ndarray]]:
    key, result = keyed
    return key.uri, (key.tile, result.inference)


def _failed_images(failure: tuple[list[tuple[MaskTileKey, np.ndarray]], tuple]
                   ) -> Iterator[tuple[str, str]]:
    """One ``(uri, reason)`` per image with a tile in a batch the mask model failed on."""
    batch, (_, _, trace) = failure
    uris = sorted({key.uri for key, _ in batch})
    logging.warning("the mask model failed on a batch of %d tiles from %d images: %s",
                    len(batch), len(uris), "".join(trace))
    for uri in uris:
        yield uri, (f"the mask model failed on a batch of {len(batch)} tiles holding tiles "
                    f"of this image: {trace[-1].strip()}")


class WriteMaskFn(beam.DoFn):
    """Base of the two steps that end an image's mask: a PNG written under ``OUT/masks/``
    when asked for, or an error row at stage ``write-mask`` in place of the row."""

    def __init__(self, output: str, write_masks: bool) -> None:
        self._output = output
        self._write_masks = write_masks
        self._write_failed = Metrics.counter(NAMESPACE, "failed_write_mask")

    def _written(self, image: ScoredImage, mask: np.ndarray
                 ) -> Iterator[ScoredImage | TaggedOutput]:
        if not self._write_masks:
            yield image
            return
        uri, relative = image.row["uri"], mask_path(image.row["uri"])
        try:
            write_atomically(join(self._output, relative), png(mask))
        except Exception as exc:  # the row becomes an error row, never a lost row
            self._write_failed.inc()
            logging.warning("crack mask of %s not written: %s: %s", uri,
                            type(exc).__name__, exc)
            yield TaggedOutput(ERRORS, error_row(
                uri, WRITE_MASK_STAGE, f"{join(self._output, relative)}: "
                                       f"{type(exc).__name__}: {exc}"))
            return
        yield image._replace(row={**image.row, MASK_COLUMN: relative})


class NoCrackFn(WriteMaskFn):
    """An image with no tile at the threshold: nothing measured, and with ``--write-masks``
    an empty mask, so every scored image has its PNG and none is left to guess."""

    def process(self, image: ScoredImage) -> Iterator[ScoredImage | TaggedOutput]:
        if not self._write_masks:
            yield image
            return
        yield from self._written(image, np.zeros((image.row["height"], image.row["width"]),
                                                 dtype=bool))


class StitchAndMeasureFn(WriteMaskFn):
    """``(uri, {"job", "tiles", "failed"})`` to the image with its measurements, its mask's
    preview and (``--write-masks``) its PNG; an image whose tiles did not all come back is
    an error row at stage ``mask``."""

    def __init__(self, output: str, write_masks: bool) -> None:
        super().__init__(output, write_masks)
        self._measured = Metrics.counter(NAMESPACE, "images_measured")
        self._failed = Metrics.counter(NAMESPACE, "failed_mask")

    def process(self, grouped: tuple[str, dict[str, Iterable]]
                ) -> Iterator[ScoredImage | TaggedOutput]:
        uri, groups = grouped
        jobs: list[MaskJob] = list(groups["job"])
        tiles = sorted(groups["tiles"], key=lambda tile: tile[0])
        failures = sorted(set(groups["failed"]))
        if not jobs:
            if tiles or failures:
                # Cutting sends the job before its tiles, only once it read the photo.
                raise RuntimeError(f"{uri}: {len(tiles)} mask tiles and no image reached "
                                   f"stitching")
            # Its error row left when the photo could not be read again.
            return
        job = jobs[0]
        if failures or [index for index, _ in tiles] != list(job.tiles):
            self._failed.inc()
            reason = "; ".join(failures) or (f"the mask model returned {len(tiles)} tile "
                                             f"masks for {len(job.tiles)} tiles")
            yield TaggedOutput(ERRORS, error_row(uri, MASK_STAGE, reason))
            return
        mask = stitch(job.plan, tiles)
        row = {**job.image.row, **measurement_columns(measure_mask(mask),
                                                      job.image.row.get("gsd_mm"))}
        self._measured.inc()
        yield from self._written(job.image._replace(row=row, mask_tiles=len(job.tiles),
                                                    mask_preview=preview(mask)), mask)


class MeasureCracks(beam.PTransform):
    """Scored images to ``{"scored": images with their measurements, "errors": rows}``:
    every image ends in exactly one of them."""

    def __init__(self, facts: RunConfig) -> None:
        super().__init__()
        if facts.mask is None:
            raise ValueError("MeasureCracks needs a run with a mask model")
        self._facts = facts

    def expand(self, scored: beam.PCollection) -> dict[str, beam.PCollection]:
        facts, mask = self._facts, self._facts.mask
        chosen = scored | "ChooseTiles" >> beam.ParDo(ChooseMaskTilesFn(
            facts.spec.threshold, facts.tile_size, facts.tile_stride, facts.max_pixels)
        ).with_outputs(FLAGGED, main=SCORED)
        cut = (chosen[FLAGGED]
               | "GroupByFile" >> beam.GroupByKey()
               | "CutTiles" >> beam.ParDo(CutMaskTilesFn(facts.max_pixels)).with_outputs(
                   JOBS, ERRORS, main=TILES))
        handler = KeyedModelHandler(MaskModelHandler(mask, facts.batch_size,
                                                     facts.litert_threads))
        results, dead_letters = (cut[TILES]
                                 | "RunMaskModel" >> RunInference(handler)
                                 .with_exception_handling())
        measured = ({"job": cut[JOBS],
                     "tiles": results | "TileMasks" >> beam.Map(_tile_mask),
                     "failed": dead_letters.failed_inferences
                     | "FailedBatches" >> beam.FlatMap(_failed_images)}
                    | "GroupByImage" >> beam.CoGroupByKey()
                    | "StitchAndMeasure" >> beam.ParDo(StitchAndMeasureFn(
                        facts.output, facts.write_masks)).with_outputs(ERRORS, main=SCORED))
        unflagged = chosen[SCORED] | "NoCrack" >> beam.ParDo(NoCrackFn(
            facts.output, facts.write_masks)).with_outputs(ERRORS, main=SCORED)
        return {
            SCORED: (measured[SCORED], unflagged[SCORED]) | "AllMeasured" >> beam.Flatten(),
            ERRORS: ((cut[ERRORS], measured[ERRORS], unflagged[ERRORS])
                     | "AllMaskErrors" >> beam.Flatten()),
        }
