"""One scoring run's configuration: everything the job is built from, decided on the
launcher before any worker starts (``pipeline.score.prepare``), and what the summary reports
about it. ``build()`` reads nothing else, so a test or another launcher can build the same
job from one object."""
from __future__ import annotations

import dataclasses

from crackscan.mask_spec import MaskSpec
from crackscan.model_card import ModelCard
from pipeline.bigquery_sink import TableSpec

# --review-per-photo's default (why 8: pipeline.review_export).
DEFAULT_REVIEW_PER_PHOTO = 8


@dataclasses.dataclass(frozen=True)
class RunConfig:
    inputs: tuple[str, ...]
    output: str
    model_dir: str
    spec: ModelCard
    tile_size: int
    tile_stride: int
    max_pixels: int
    report_top: int
    started: float
    # The earlier output whose rows are carried over: --skip-scored once prepare() found
    # that its run finished, else None.
    reuse_from: str | None = None
    # Whether tiles-*.jsonl is written, and so whether its rows are accounted for.
    write_tiles: bool = False
    runtime: str = "litert"
    # Why that runtime (pipeline.runtime_choice: "--runtime", "measured here", ...); where
    # the float and int8 files were timed, their best images/s and int8 over float in the
    # median over batch sizes.
    runtime_from: str = "--runtime"
    runtime_rates: dict[str, float] | None = None
    runtime_speedup: float | None = None
    batch_size: int = 8
    # "--batch-size", "measured here", "measured here (cached)" or "default".
    batch_size_from: str = "default"
    litert_threads: int = 1
    output_format: str = "csv"
    bigquery_table: TableSpec | None = None
    # --export-review: where the tiles to label go (None: not exported), and how many of
    # one photo's tiles at most.
    export_review: str | None = None
    review_per_photo: int = DEFAULT_REVIEW_PER_PHOTO
    # Whether the runner has several workers to spread one archive's reading and scoring
    # over (pipeline.score.spreads_over_workers); False on the in-memory DirectRunner.
    spread: bool = True
    # --gsd-mm: every photo's millimetres per pixel, over what its EXIF gives (None: EXIF).
    gsd_mm: float | None = None
    # The card's mask model when cracks are measured this run (None: they are not), why
    # (pipeline.score.masks_for), and whether each scored image's mask PNG is written.
    mask: MaskSpec | None = None
    masks_why: str = "the model card lists no mask_model"
    write_masks: bool = False

    def inference(self) -> dict[str, object]:
        """How the model runs, as the summary and ``--dry-run`` report it."""
        return {"runtime": self.runtime, "runtime_from": self.runtime_from,
                "runtime_rates": self.runtime_rates, "runtime_speedup": self.runtime_speedup,
                "batch_size": self.batch_size,
                "batch_size_from": self.batch_size_from, "litert_threads": self.litert_threads}

    def masks(self) -> dict[str, object]:
        """Whether crack masks and measurements run and why, as the summary and
        ``--dry-run`` report it."""
        mask = self.mask
        return {"run": mask is not None, "why": self.masks_why,
                "file": None if mask is None else mask.file,
                "version": None if mask is None else mask.version,
                "threshold": None if mask is None else mask.threshold,
                "write_masks": self.write_masks}
