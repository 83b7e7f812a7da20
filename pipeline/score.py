"""Score folders, globs and archives of photos for cracks: ``python -m pipeline.score``.

    python -m pipeline.score --input 'gs://surveys/2024-06-01/*.zip' --model models/v3 \\
        --output gs://results/2024-06-01/ [options] [Beam pipeline options]

Writes ``predictions-*.csv`` (or ``.jsonl``), ``errors-*.jsonl``, optionally
``tiles-*.jsonl``, then ``cracks.geojson``, ``cracks.kml``, ``summary.json`` and
``report.html`` under the output prefix. Every input ends up in exactly one of predictions
and errors; the run fails if that does not add up. Everything that can be checked before the
job starts (model card, inputs, output) is checked first, so a typo costs seconds, not a
worker fleet.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from crackscan import cli, sources, verbosity
from crackscan.decode import DEFAULT_MAX_PIXELS
from crackscan.mask_spec import MaskSpec, check_shapes, read_mask_spec
from crackscan.model_card import ModelCard, ModelCardError, join
from crackscan.tflite_model import TFLiteClassifier
from crackscan.tiles import default_stride
from pipeline import runtime_choice
from pipeline.batch_size import fastest_batch_size, time_litert
from pipeline.inference import (DEFAULT_BATCH_SIZES, FAILED, KERAS, LITERT, LITERT_INT8,
                                LITERT_PER_WORKER, RUNTIMES, SCORES, SHIPPED_MODEL_DIR, SINGLE,
                                ScoreTiles, litert_file, read_checked, tile_model_handler)
from pipeline.reading import ERRORS, IMAGES, REUSED, ReadInputs, ReadPreviousPredictions
from pipeline.masks import MeasureCracks
from pipeline.masks import ERRORS as MASK_ERRORS
from pipeline.masks import SCORED as MEASURED
from pipeline.records import MASK_COLUMN, MASK_FOLDER, ScoredImage, tile_rows
from pipeline.regroup import SCORED, RegroupByImage
from pipeline.regroup import ERRORS as INFERENCE_ERRORS
from pipeline.review_export import ExportReview, existing_export
from pipeline.bigquery_sink import WriteBigQuery, table_spec
from pipeline.geo import GEOJSON_FILE, KML_FILE
from pipeline.dry_run import dataflow_problems, is_dataflow, job_plan
from pipeline.flink import FlinkSetupError
from pipeline.flink import with_defaults as flink_defaults
from pipeline.sinks import FORMATS, WriteJsonLines, WritePredictions
from pipeline.run_status import REPORT_FILE, SUMMARY_FILE, unfinished_run_reason
from pipeline.run_config import DEFAULT_REVIEW_PER_PHOTO, RunConfig
from pipeline.runtime_choice import RuntimeChoice, Timer, rates_text
from pipeline.summary import Summarize
from pipeline.tiling import INFOS, TILES, DecodeAndTile
from pipeline.tiling import ERRORS as TILING_ERRORS
from pipeline.workers import TILES_SCORED, counted, per_worker

DIRECT_RUNNERS = (None, "DirectRunner", "SwitchingDirectRunner")
OUTPUT_NAMES = ("predictions-*", "tiles-*", "errors-*", GEOJSON_FILE, KML_FILE, SUMMARY_FILE,
                REPORT_FILE, f"{MASK_FOLDER}/*")


class SetupError(ValueError):
    """A command line that cannot give a correct run; reported before the job starts."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The job's own flags; ``cli.parse_with_beam_options`` takes Beam's beside them.

    No abbreviations: a prefix of one of our flags is not taken for it."""
    parser = cli.command_parser("pipeline.score", __doc__.split("\n\n")[0], epilog=(
        "Beam pipeline options may follow the job's flags and are passed to Beam untouched: "
        "--runner (DirectRunner by default, DataflowRunner, FlinkRunner, ...), "
        "--direct_running_mode, --direct_num_workers, and for Dataflow --project, --region, "
        "--temp_location, --setup_file, --max_num_workers and the rest of Beam's pipeline "
        "options. An argument that neither this command nor Beam knows stops the run."))
    parser.add_argument("--input", action="append", required=True, metavar="PATTERN",
                        help="file glob, folder or .zip/.tar/.tar.gz archive, local or "
                             "gs://; repeat for more")
    parser.add_argument("--model", default=SHIPPED_MODEL_DIR, metavar="MODEL_DIR",
                        help="exported model folder: model_card.json + model.tflite and/or "
                             "model.keras, local or gs:// (default: the field model shipped "
                             "in the package; on Dataflow copy it to gs:// first)")
    parser.add_argument("--output", required=True, metavar="OUT",
                        help="output folder or gs:// prefix; must not hold an earlier run")
    parser.add_argument("--format", choices=FORMATS, default="csv",
                        help="predictions file format (default: csv)")
    parser.add_argument("--write-tiles", action="store_true",
                        help="also write tiles-*.jsonl with every tile's box and probability")
    parser.add_argument("--tile-size", type=_positive_int, metavar="PX",
                        help="tile side in pixels (default: the model card's tile_size)")
    parser.add_argument("--tile-stride", type=_positive_int, metavar="PX",
                        help="largest distance between tile origins, at most the tile size "
                             "(default: 3/4 of the tile size, so neighbouring tiles overlap)")
    parser.add_argument("--batch-size", type=_positive_int,
                        help="tiles per model call (default on the DirectRunner with LiteRT: "
                             "the fastest for the model file measured on this machine, cached; "
                             "otherwise 8 on LiteRT, 32 on Keras)")
    parser.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS,
                        help="refuse images larger than this many pixels (default: "
                             f"{DEFAULT_MAX_PIXELS})")
    parser.add_argument("--skip-scored", metavar="PREVIOUS_OUT",
                        help="output of an earlier run: images it scored with the same model "
                             "are not scored again, their rows are carried over (default: "
                             "none, every input is scored)")
    parser.add_argument("--runtime", choices=RUNTIMES,
                        help="model runtime: litert-int8 runs the card's int8 .tflite (listed "
                             "only when it passed its accuracy gate against the float model), "
                             "litert the float .tflite, keras model.keras (default: where the "
                             "card lists an int8 file, whichever of it and the float .tflite "
                             "is faster on the machine that runs them, int8 only when "
                             f"{runtime_choice.INT8_MARGIN}x as fast; else the float .tflite, "
                             "else keras)")
    parser.add_argument("--litert-threads", type=_positive_int, metavar="N",
                        help="XNNPACK threads per LiteRT interpreter (default: the CPU count "
                             "divided among the DirectRunner's workers; 1 on other runners, "
                             "which run a worker per core)")
    parser.add_argument("--gsd-mm", type=_positive_float, metavar="MM",
                        help="ground sampling distance of every photo, in millimetres per "
                             "pixel, for a user who knows the camera's distance to the "
                             "surface; wins over what the photos' EXIF gives (default: from "
                             "each photo's EXIF and DJI XMP where it is a nadir shot of a "
                             "known camera, else empty with the reason)")
    parser.add_argument("--write-masks", action="store_true",
                        help="also write each scored image's crack mask as an 8-bit PNG of "
                             "its size (255 = crack) under OUT/masks/, named in the row's "
                             "mask column; needs a model card with a mask_model")
    parser.add_argument("--no-masks", action="store_true",
                        help="measure no cracks, even where the model card lists a mask "
                             "model: verdicts only (default: where the card lists a "
                             "mask_model, crack length and width are measured on the "
                             "images with a tile at the tile threshold)")
    parser.add_argument("--report-top", type=_count, default=12, metavar="K",
                        help="most-cracked images shown with heat maps in report.html "
                             "(default: 12)")
    parser.add_argument("--bigquery-table", type=table_spec, metavar="PROJECT:DATASET.TABLE",
                        help="also append the prediction rows to this BigQuery table "
                             "(partitioned by day of scored_at) and the errors to "
                             "TABLE_errors; both are created when missing (default: none, "
                             "files only)")
    parser.add_argument("--export-review", metavar="DIR",
                        help="also write the tiles worth labelling (every tile at the "
                             "threshold of a Positive photo, then those nearest the "
                             "threshold) as DIR/unsorted/*.png with DIR/review.csv; sorted "
                             "into DIR/Positive/ and DIR/Negative/, DIR is a source for "
                             "training.build_dataset (default: none)")
    parser.add_argument("--review-per-photo", type=_positive_int,
                        default=DEFAULT_REVIEW_PER_PHOTO, metavar="N",
                        help="most tiles of one photo --export-review writes "
                             f"(default: {DEFAULT_REVIEW_PER_PHOTO})")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the model, inputs, output and (for DataflowRunner) the "
                             "Dataflow options, print the job as JSON, and submit nothing")
    return parser


def _matching(pattern: str) -> list[str]:
    try:
        return sources.expand(pattern)
    except sources.SourceError:
        return []


def runtime_for(args: argparse.Namespace, spec: ModelCard, options: PipelineOptions,
                threads: int, timer: Timer = time_litert) -> RuntimeChoice:
    """The runtime asked for; else where the card lists an int8 file (only when it passed
    its gate), the faster of it and the float .tflite on the machine that runs them
    (``pipeline.runtime_choice``: timed here on the DirectRunner, by each worker elsewhere);
    else the float .tflite, else Keras. ``timer`` times the two files here."""
    if args.runtime == LITERT_INT8 and spec.int8_uri is None:
        raise SetupError(f"--runtime litert-int8: {args.model} lists no int8 model that "
                         f"passed its accuracy gate (see int8.gate in its model card); add "
                         f"one with python -m training.export_tflite --model {args.model} "
                         f"--int8 DATA_DIR, or use --runtime litert")
    if args.runtime == KERAS and spec.model_uri is None:
        raise SetupError(f"--runtime keras: {args.model} holds no model.keras (a LiteRT-only "
                         f"model folder); use --runtime litert")
    if args.runtime == LITERT and spec.tflite_uri is None:
        raise SetupError(f"--runtime litert: {args.model} has no .tflite in its model card; "
                         f"add one with python -m training.export_tflite --model "
                         f"{args.model}, or use --runtime keras")
    if args.runtime:
        return RuntimeChoice(args.runtime, runtime_choice.FORCED)
    if spec.int8_uri is None or spec.tflite_uri is None:
        return RuntimeChoice(LITERT if spec.tflite_uri else KERAS, runtime_choice.NO_INT8)
    if options.view_as(StandardOptions).runner not in DIRECT_RUNNERS:
        return RuntimeChoice(LITERT_PER_WORKER, runtime_choice.WORKERS_DECIDE)
    return runtime_choice.on_launcher(spec, threads, timer)


def local_defaults(pipeline_args: list[str]) -> list[str]:
    """Beam's options, plus one worker process per core on the DirectRunner unless the command
    line chose its running mode: Beam's default runs the whole job in one process, where
    decoding waits for inference and one interpreter spreads over every core. On 2 cores,
    two worker processes of one LiteRT thread each scored 1.17-1.31x the images/s of that
    default (bench/README.md section 8): XNNPACK runs 1.6x faster on two threads than on
    one, two interpreters 1.9x, and each process decodes while the other infers."""
    # Beam's own parser cannot tell a flag given with its default value from one left out.
    chosen = argparse.ArgumentParser(add_help=False)
    chosen.add_argument("--direct_running_mode")
    chosen.add_argument("--direct_num_workers", type=int)
    given, _ = chosen.parse_known_args(pipeline_args)
    cores = os.cpu_count() or 1
    if (PipelineOptions(pipeline_args).view_as(StandardOptions).runner not in DIRECT_RUNNERS
            or given.direct_running_mode is not None
            or (given.direct_num_workers or cores) < 2):
        return pipeline_args
    workers = [] if given.direct_num_workers else [f"--direct_num_workers={cores}"]
    return [*pipeline_args, "--direct_running_mode=multi_processing", *workers]


def spreads_over_workers(options: PipelineOptions) -> bool:
    """Whether the job spreads one archive's members over workers: not with a single
    worker (the in-memory DirectRunner), where the shuffle that spreads them would gain
    nothing and hold a tar's images in memory until they were all read."""
    if options.view_as(StandardOptions).runner not in DIRECT_RUNNERS:
        return True
    direct = options.view_as(DirectOptions)
    workers = direct.direct_num_workers or os.cpu_count() or 1
    return direct.direct_running_mode != "in_memory" and workers > 1


def litert_threads(args: argparse.Namespace, options: PipelineOptions) -> int:
    """Threads per interpreter such that all interpreters together use each core once:
    XNNPACK's threads spin while they wait, so oversubscribed cores run slower, not
    faster. The DirectRunner runs one interpreter per worker; Dataflow and Flink already
    run one worker process per core."""
    if args.litert_threads:
        return args.litert_threads
    cores = os.cpu_count() or 1
    if options.view_as(StandardOptions).runner not in DIRECT_RUNNERS:
        return 1
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "in_memory":
        return cores
    workers = direct.direct_num_workers or cores
    return max(1, cores // workers)


def batch_size(args: argparse.Namespace, options: PipelineOptions, spec: ModelCard,
               choice: RuntimeChoice, threads: int) -> dict[str, Any]:
    """Tiles per model call and where that number came from: ``--batch-size``; else, for a
    LiteRT file on the DirectRunner, the fastest measured here for that file on the
    workers' thread count (``pipeline.batch_size``; where float and int8 were timed for the
    choice, that same measurement); else the runtime's default, since a remote runner's
    workers are not the machine the launcher could measure."""
    if args.batch_size:
        return {"batch_size": args.batch_size, "batch_size_from": "--batch-size"}
    if choice.batch_size() is not None:
        return {"batch_size": choice.batch_size(),
                "batch_size_from": "measured here (cached)"
                if choice.why == runtime_choice.MEASURED_CACHED else "measured here"}
    runtime = choice.runtime
    if runtime in (LITERT, LITERT_INT8) and \
            options.view_as(StandardOptions).runner in DIRECT_RUNNERS:
        uri, sha256 = litert_file(spec, int8=runtime == LITERT_INT8)
        size, _, cached = fastest_batch_size(lambda: read_checked(uri, sha256), sha256,
                                             threads, spec.tile_size)
        return {"batch_size": size,
                "batch_size_from": "measured here (cached)" if cached else "measured here"}
    return {"batch_size": DEFAULT_BATCH_SIZES[LITERT if runtime == LITERT_PER_WORKER
                                              else runtime], "batch_size_from": "default"}


def masks_for(args: argparse.Namespace, spec: ModelCard, tile_size: int
              ) -> tuple[MaskSpec | None, str]:
    """The mask model this run measures cracks with, or None, and why. A card's mask model
    runs by default; ``--write-masks`` without one that can run stops the run here, since
    the user asked for files this run could not write."""
    if args.no_masks:
        if args.write_masks:
            raise SetupError("--write-masks and --no-masks ask for opposite things; give one")
        return None, "--no-masks"
    mask = read_mask_spec(args.model, spec.tile_size)
    why = None
    if mask is None:
        why = f"the model card of {args.model} lists no mask_model"
    elif tile_size != mask.tile_size:
        why = (f"--tile-size {tile_size}: the mask model takes {mask.tile_size}-pixel "
               f"tiles only")
    if why is not None:
        if args.write_masks:
            raise SetupError(f"--write-masks: no crack masks can be made: {why}")
        return None, why
    probe = TFLiteClassifier(read_checked(mask.uri, mask.sha256), 1)
    check_shapes(mask, probe.input_shape, probe.output_shape)
    return mask, (f"{mask.file} runs on the tiles at or above the tile threshold "
                  f"{spec.threshold:g} and their neighbours")


def prepare(args: argparse.Namespace, options: PipelineOptions) -> RunConfig:
    """Every check that needs no worker (model card, runtime, tiling, inputs, output, earlier
    run) and every choice the job is built from, once."""
    started = time.time()
    spec = ModelCard.read(args.model)
    tile_size = args.tile_size or spec.tile_size
    stride = args.tile_stride or default_stride(tile_size)
    if tile_size != spec.tile_size and args.runtime != KERAS and spec.tflite_uri:
        raise SetupError(f"--tile-size {tile_size}: the model's .tflite takes "
                         f"{spec.tile_size}-pixel tiles only; use --runtime keras for "
                         f"other tile sizes")
    mask, masks_why = masks_for(args, spec, tile_size)
    logging.info("crack masks: %s", masks_why)
    threads = litert_threads(args, options)
    choice = runtime_for(args, spec, options, threads)
    runtime = choice.runtime
    if runtime == LITERT_INT8:
        spec = spec.for_int8()
    logging.info("runtime: %s (%s)%s", runtime, choice.why,
                 f"; {rates_text(choice.best_rates(), choice.speedup())}" if choice.rates
                 else "")
    if stride > tile_size:
        raise SetupError(f"--tile-stride {stride} is larger than the tile size {tile_size}: "
                         f"parts of every photo would never be scored")
    listed = sum(len(sources.expand(pattern)) for pattern in args.input)
    logging.info("%d files match %d input pattern(s)", listed, len(args.input))
    earlier = [path for name in OUTPUT_NAMES for path in _matching(join(args.output, name))]
    if earlier:
        raise SetupError(f"{args.output} already holds the output of a run ({earlier[0]}, ...): "
                         f"choose another --output, or pass this one as --skip-scored to a "
                         f"new output to reuse its scores")
    exported = existing_export(args.export_review) if args.export_review else None
    if exported:
        raise SetupError(f"--export-review {args.export_review} already holds an export "
                         f"({exported}); choose another folder")
    reuse_from = args.skip_scored
    unfinished = unfinished_run_reason(reuse_from) if reuse_from else None
    if unfinished:
        # Not an error: the re-run of a killed or failed night must still score the night.
        logging.warning("--skip-scored %s: %s; nothing of it is reused, every input is scored",
                        reuse_from, unfinished)
        reuse_from = None
    return RunConfig(inputs=tuple(args.input), output=args.output, model_dir=args.model,
                     spec=spec, tile_size=tile_size, tile_stride=stride,
                     max_pixels=args.max_pixels, report_top=args.report_top, started=started,
                     reuse_from=reuse_from, write_tiles=args.write_tiles, runtime=runtime,
                     runtime_from=choice.why, runtime_rates=choice.best_rates(),
                     runtime_speedup=choice.speedup(),
                     **batch_size(args, options, spec, choice, threads),
                     litert_threads=threads,
                     output_format=args.format, bigquery_table=args.bigquery_table,
                     export_review=args.export_review,
                     review_per_photo=args.review_per_photo,
                     spread=spreads_over_workers(options), gsd_mm=args.gsd_mm,
                     mask=mask, masks_why=masks_why, write_masks=args.write_masks)


def build(pipeline: beam.Pipeline, facts: RunConfig) -> None:
    """sources -> decode and tile -> model -> regroup per image -> crack masks -> sinks ->
    summary."""
    spec = facts.spec
    previous = pipeline | "ReadPrevious" >> ReadPreviousPredictions(
        facts.reuse_from, spec.version, spec.photo_cutoff)
    read = pipeline | "ReadInputs" >> ReadInputs(list(facts.inputs), previous, facts.spread)
    tiled = read[IMAGES] | "DecodeAndTile" >> DecodeAndTile(facts.tile_size, facts.tile_stride,
                                                            facts.max_pixels)
    handler = tile_model_handler(spec, facts.batch_size, facts.runtime, facts.litert_threads)
    inferred = tiled[TILES] | "ScoreTiles" >> ScoreTiles(handler)
    assembled = ({"info": tiled[INFOS] | "KeyByUri" >> beam.Map(lambda info: (info.uri, info)),
                  "scores": inferred[SCORES],
                  "single": inferred[SINGLE],
                  "failed": inferred[FAILED]}
                 | "RegroupByImage" >> RegroupByImage(spec, facts.gsd_mm))
    scored, mask_errors = assembled[SCORED], []
    if facts.mask is not None:
        measured = scored | "MeasureCracks" >> MeasureCracks(facts)
        scored, mask_errors = measured[MEASURED], [measured[MASK_ERRORS]]
    # An earlier run's mask PNG lies under its own output, not under this one.
    carried = read[REUSED] | "CarryReused" >> beam.Map(
        lambda row: ScoredImage({**row, MASK_COLUMN: None}, ()))
    predictions = (scored, carried) | "AllPredictions" >> beam.Flatten()
    errors = ((read[ERRORS], tiled[TILING_ERRORS], assembled[INFERENCE_ERRORS], *mask_errors)
              | "AllErrors" >> beam.Flatten())

    rows = predictions | "PredictionRows" >> beam.Map(lambda image: image.row)
    if facts.bigquery_table:
        _ = {"predictions": rows, "errors": errors} | "WriteBigQuery" >> WriteBigQuery(
            facts.bigquery_table)
    files = [
        rows | "WritePredictions" >> WritePredictions(facts.output, facts.output_format),
        errors | "WriteErrors" >> WriteJsonLines(facts.output, "errors"),
    ]
    if facts.write_tiles:
        files.append(scored
                     | "TileRows" >> beam.FlatMap(tile_rows)
                     | "WriteTiles" >> WriteJsonLines(facts.output, "tiles"))
    if facts.export_review:
        files.append(scored | "ExportReview" >> ExportReview(
            facts.export_review, spec.positive_class, facts.review_per_photo,
            facts.max_pixels))
    _ = ({"images": read[IMAGES], "reused": read[REUSED], "read_errors": read[ERRORS],
          "predictions": predictions, "errors": errors,
          "files": files | "OutputFiles" >> beam.Flatten()}
         | "Summarize" >> Summarize(facts))


def _log_counters(result: beam.runners.runner.PipelineResult) -> None:
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace("crackscan"))
    for counter in sorted(query["counters"], key=lambda c: c.key.metric.name):
        logging.info("counter %s = %d", counter.key.metric.name, counted(counter))
    for worker, tiles in sorted(per_worker(result, TILES_SCORED).items()):
        logging.info("worker %s scored %d tiles", worker, tiles)
    for runtime in (LITERT, LITERT_INT8):  # what remote workers chose (runtime_choice)
        counter = runtime_choice.worker_counter(runtime)
        for worker, tiles in sorted(per_worker(result, counter).items()):
            logging.info("worker %s ran %s on %d tiles", worker, runtime, tiles)


def dry_run(args: argparse.Namespace, options: PipelineOptions) -> dict[str, Any]:
    """The job that would be submitted, after the checks a launch would fail on later."""
    if is_dataflow(options):
        paths = {"--input": args.input, "--model": [args.model], "--output": [args.output],
                 "--skip-scored": [args.skip_scored] if args.skip_scored else [],
                 "--export-review": [args.export_review] if args.export_review else []}
        problems = dataflow_problems(options, paths)
        if problems:
            raise SetupError("cannot launch on Dataflow:\n  " + "\n  ".join(problems))
    plan = job_plan(options, prepare(args, options))
    if args.bigquery_table:
        plan["bigquery_tables"] = [str(args.bigquery_table), str(args.bigquery_table.errors)]
    print(json.dumps(plan, indent=2))
    return plan


def run(argv: list[str] | None = None,
        test_pipeline: beam.Pipeline | None = None) -> dict[str, Any] | None:
    """Runs the job; returns (and prints) the summary when the runner waited for the end,
    or with ``--dry-run`` the job that would have been submitted. An argument that neither
    the job nor Beam's pipeline options understand exits with status 2 before any check."""
    args, pipeline_args = cli.parse_with_beam_options(build_parser(), argv)
    pipeline_args = flink_defaults(local_defaults(pipeline_args))
    if args.dry_run:
        return dry_run(args, PipelineOptions(pipeline_args))
    pipeline = test_pipeline or beam.Pipeline(options=PipelineOptions(pipeline_args))
    facts = prepare(args, pipeline.options)
    build(pipeline, facts)
    result = pipeline.run()
    result.wait_until_finish()
    if result.state != PipelineState.DONE:
        return None
    _log_counters(result)
    with FileSystems.open(join(facts.output, SUMMARY_FILE)) as handle:
        summary = json.loads(handle.read())
    print(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> None:
    verbosity.configure(argv)
    with cli.one_line_errors("pipeline.score", ModelCardError, sources.SourceError, SetupError,
                             FlinkSetupError):
        run(argv)


if __name__ == "__main__":
    main()
