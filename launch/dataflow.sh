#!/usr/bin/env bash
# Score a survey archive in Google Cloud Dataflow and wait for the job to finish.
#
# Usage: launch/dataflow.sh INPUT MODEL_DIR OUT [extra pipeline.score / Beam flags...]
#   INPUT      gs:// folder, glob or archive, e.g. gs://surveys/2024-06-01/ or 'gs://s/x/*.zip'
#   MODEL_DIR  gs:// model folder (model_card.json + model.tflite and/or model.keras; for the
#              shipped model, copy pipeline/default_model/ to gs:// first)
#   OUT        gs:// output prefix
# The three can also be given as environment variables INPUT, MODEL_DIR and OUT.
# Extra flags are passed on unchanged, e.g. --bigquery-table my-project:inspection.cracks
# or --subnetwork / --service_account_email / --no_use_public_ips for locked-down projects.
# Add --dry-run to check the launch first: project, region, temp/staging locations, the
# setup file and that every path is gs:// are checked offline, the model card is read and
# INPUT listed, and the job that would be submitted is printed as JSON; nothing is submitted.
#
# Fill in (required environment):
#   PROJECT   GCP project that runs the job
#   REGION    Dataflow region; pick the buckets' region (cross-region reads cost and are slow)
#   BUCKET    bucket name (no gs://) for Dataflow's temp and staging files
# Optional environment (defaults in brackets):
#   TEMP_LOCATION       [gs://$BUCKET/crackscan/temp]
#   STAGING_LOCATION    [gs://$BUCKET/crackscan/staging]
#   MACHINE_TYPE        [n2-standard-4] scoring is CPU-bound TensorFlow inference: N2 cores
#                       are faster per core than N1 at a similar price, and 4 GB per vCPU fits
#                       one SDK process per core, each holding TensorFlow + the model + a
#                       decoded 30-megapixel survey photo and its tiles. Larger machines add
#                       in-process copies and coarser autoscaling steps, smaller ones pay the
#                       per-VM overhead (boot, container, disk) more often.
#   MAX_NUM_WORKERS     [10] autoscaling ceiling, i.e. the cost ceiling
#   DISK_SIZE_GB        [50] images are streamed, not stored; the 250 GB batch default is waste
#   JOB_NAME            [crackscan-YYYYMMDD-HHMMSS, UTC]
#   SETUP_FILE          [<repo>/setup.py] installs crackscan and its dependencies on workers
#   SDK_CONTAINER_IMAGE [unset] a prebuilt worker image with the dependencies installed;
#                       without it each new worker pip-installs TensorFlow at start-up
#   PYTHON              [python3] interpreter with crackscan and apache-beam[gcp] installed
# Authentication: `gcloud auth application-default login` (or a service account) beforehand.
#
# The command blocks until the job ends and exits non-zero when it fails (with --dry-run it
# returns at once, non-zero naming every bad option).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

INPUT="${1:-${INPUT:-}}"
MODEL_DIR="${2:-${MODEL_DIR:-}}"
OUT="${3:-${OUT:-}}"
require INPUT "argument 1: gs:// folder, glob or archive to score" \
        MODEL_DIR "argument 2: gs:// model folder" \
        OUT "argument 3: gs:// output prefix" \
        PROJECT "GCP project that runs the Dataflow job" \
        REGION "Dataflow region, e.g. europe-west1 (the buckets' region)" \
        BUCKET "bucket name for temp and staging files, without gs://"
shift $(($# < 3 ? $# : 3))
require_gcs INPUT MODEL_DIR OUT

TEMP_LOCATION="${TEMP_LOCATION:-gs://$BUCKET/crackscan/temp}"
STAGING_LOCATION="${STAGING_LOCATION:-gs://$BUCKET/crackscan/staging}"
MACHINE_TYPE="${MACHINE_TYPE:-n2-standard-4}"
MAX_NUM_WORKERS="${MAX_NUM_WORKERS:-10}"
DISK_SIZE_GB="${DISK_SIZE_GB:-50}"
JOB_NAME="${JOB_NAME:-crackscan-$(date -u +%Y%m%d-%H%M%S)}"
SETUP_FILE="${SETUP_FILE:-$REPO_ROOT/setup.py}"
SDK_CONTAINER_IMAGE="${SDK_CONTAINER_IMAGE:-}"

[[ -f "$SETUP_FILE" ]] || die "SETUP_FILE $SETUP_FILE does not exist"
[[ "$JOB_NAME" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
  die "JOB_NAME '$JOB_NAME' is not a valid Dataflow job name (lowercase letters, digits, '-')"

optional=()
if [[ -n "$SDK_CONTAINER_IMAGE" ]]; then
  optional+=(--sdk_container_image="$SDK_CONTAINER_IMAGE")
fi

set -x
exec "$PYTHON" -m pipeline.score \
  --input "$INPUT" \
  --model "$MODEL_DIR" \
  --output "$OUT" \
  --runner=DataflowRunner \
  --project="$PROJECT" \
  --region="$REGION" \
  --temp_location="$TEMP_LOCATION" \
  --staging_location="$STAGING_LOCATION" \
  --worker_machine_type="$MACHINE_TYPE" \
  --max_num_workers="$MAX_NUM_WORKERS" \
  --disk_size_gb="$DISK_SIZE_GB" \
  --setup_file="$SETUP_FILE" \
  --experiments=use_runner_v2 \
  --job_name="$JOB_NAME" \
  ${optional[@]+"${optional[@]}"} \
  "$@"
