"""``--dry-run``: check a launch offline and describe the job instead of submitting it.

Beam's own option validator for Dataflow looks up credentials and buckets, so it needs the
network and a real project; these checks read only the command line and the local disk,
and catch what most often makes a Dataflow submission fail minutes after it started:
a missing project, region or temp location, local paths that workers cannot see, and
workers that would start without crackscan installed.
"""
from __future__ import annotations

import os
import re
from typing import Any

from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions,
                                                  SetupOptions, StandardOptions,
                                                  WorkerOptions)

from pipeline.run_config import RunConfig

DATAFLOW_RUNNERS = frozenset({"DataflowRunner", "dataflow"})
REQUIRED_DATAFLOW_OPTIONS = {
    "project": "the GCP project that runs the job",
    "region": "the Dataflow region, e.g. europe-west1 (the buckets' region)",
    "temp_location": "a gs:// folder for Dataflow's temporary files",
}
# Dataflow's rule for job names.
JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SPREAD_STEP = "ReadInputs/Spread"  # left out of a job with one worker
MASK_STEP = "MeasureCracks"  # left out of a job without a mask model
# What each step of ``pipeline.score.build`` is spread over, by its label: a runner spreads
# the elements of a step over its workers, and a step runs where its input landed unless a
# shuffle comes between (tests/test_zip_parallel.py checks that every label is in the job).
PARALLELISM = (
    ("ReadInputs/List", "input patterns: each is listed by one worker"),
    ("ReadInputs/EachFileOnce", "files: a shuffle keeps each listed file once and spreads "
                                "the files over the workers"),
    ("ReadInputs/Locate", "files: each where it landed; a zip's central directory is read "
                          "there and the zip listed down to slices of its members, a tar is "
                          "read whole there (one stream), a plain file is passed on unread"),
    (SPREAD_STEP, "archive members and files: a shuffle spreads zip slices, plain "
                          "files by name and tar members with their bytes over the workers"),
    ("ReadInputs/Read", "archive members and files: each zip slice and plain file is read by "
                        "the worker it landed on"),
    ("DecodeAndTile", "images: each decoded and tiled on the worker that read it; its tiles "
                      "stay there (shuffling their pixels cost more than spreading them "
                      "gained, bench/README.md section 6)"),
    ("ScoreTiles", "tiles: in batches, on the worker that tiled their image"),
    ("RegroupByImage", "images: a shuffle by uri brings an image's tile scores together"),
    ("MeasureCracks", "flagged images: a shuffle by the file or archive that holds them, "
                      "read again, their chosen tiles run through the mask model there, "
                      "and a shuffle by uri brings an image's tile masks together; left out "
                      "of a run without a mask model"),
    ("Summarize", "one summary: counts combined from every worker"),
)


def is_dataflow(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner in DATAFLOW_RUNNERS


def dataflow_problems(options: PipelineOptions, paths: dict[str, list[str]]) -> list[str]:
    """Every reason the job could not run on Dataflow, each naming its option; [] if none.

    ``paths`` maps a pipeline flag (``--input``, ``--model``, ...) to the paths it was given:
    Dataflow workers read and write them, so they must be ``gs://``.
    """
    cloud = options.view_as(GoogleCloudOptions)
    setup = options.view_as(SetupOptions)
    problems = [f"missing required option --{name}: {meaning}"
                for name, meaning in REQUIRED_DATAFLOW_OPTIONS.items()
                if not getattr(cloud, name)]
    for name in ("temp_location", "staging_location"):
        value = getattr(cloud, name)
        if value and not value.startswith("gs://"):
            problems.append(f"--{name} must be a gs:// path, got {value!r}")
    if cloud.job_name and not JOB_NAME.match(cloud.job_name):
        problems.append(f"--job_name {cloud.job_name!r} is not a valid Dataflow job name "
                        f"(lowercase letters, digits and '-', starting with a letter)")
    if setup.setup_file:
        if not os.path.isfile(setup.setup_file):
            problems.append(f"--setup_file {setup.setup_file} does not exist")
    elif not options.view_as(WorkerOptions).sdk_container_image:
        problems.append("neither --setup_file nor --sdk_container_image is given: workers "
                        "would start without crackscan installed")
    for flag, values in paths.items():
        for value in values:
            if not value.startswith("gs://"):
                problems.append(f"{flag} {value} is not a gs:// path: Dataflow workers "
                                f"cannot see this machine's disk")
    return problems


def job_plan(options: PipelineOptions, facts: RunConfig) -> dict[str, Any]:
    """What would be submitted: the explicitly given options and the run's own facts."""
    cloud = options.view_as(GoogleCloudOptions)
    return {
        "submitted": False,
        "runner": options.view_as(StandardOptions).runner or "DirectRunner",
        "project": cloud.project,
        "region": cloud.region,
        "job_name": cloud.job_name,
        "inputs": list(facts.inputs),
        "model_dir": facts.model_dir,
        "model_version": facts.spec.version,
        "threshold": facts.spec.threshold,
        "photo_threshold": facts.spec.photo_cutoff,
        "tile_size": facts.tile_size,
        "tile_stride": facts.tile_stride,
        "inference": facts.inference(),
        "masks": facts.masks(),
        "output": facts.output,
        "parallelism": [{"step": step, "spread_over": spread} for step, spread in PARALLELISM
                        if (facts.spread or step != SPREAD_STEP)
                        and (facts.mask is not None or step != MASK_STEP)],
        "pipeline_options": options.get_all_options(drop_default=True,
                                                    retain_unknown_options=True),
    }
