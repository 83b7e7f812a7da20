#!/usr/bin/env bash
# Score a survey on an Apache Flink session cluster with Beam's FlinkRunner: the same command
# that scores on launch/flink_local.sh's cluster, pointed at a real one.
#
# Usage: launch/flink.sh INPUT MODEL_DIR OUT [extra pipeline.score / Beam flags...]
#   INPUT, MODEL_DIR, OUT  as for local.sh. The Python workers run beside the TaskManagers,
#   so all three must be paths every TaskManager can reach: gs:// (apache-beam[gcp]),
#   s3:// (apache-beam[aws]), hdfs:// or a shared mount.
# The three can also be given as environment variables INPUT, MODEL_DIR and OUT.
#
# What the cluster needs (docs/flink.md): Flink 1.20, and beside every TaskManager a Beam
# worker pool started from an environment with crackscan installed, on the address in
# ENVIRONMENT_CONFIG (`python -m pipeline.worker_pool --address 127.0.0.1:50000`, the
# worker-pool sidecar of Flink on Kubernetes). This machine needs Java 11+ to run the job
# server for the submission, and its jar in the cache (launch/flink_local.sh fetch-jar).
#
# Fill in (required environment):
#   FLINK_MASTER    flink mode: the session cluster's REST address, HOST:8081
#   JOB_ENDPOINT    portable mode: an already running Beam Flink job server, HOST:8099
# Optional environment (defaults in brackets; an unset one is chosen by pipeline/flink.py):
#   FLINK_MODE            [flink] flink | portable
#   FLINK_VERSION         [1.20] the cluster's Flink major.minor; the job server must match it
#   FLINK_JOB_SERVER_JAR  [the cache's, from launch/flink_local.sh fetch-jar] job server jar
#   PARALLELISM           [the cluster's task slots, from its REST API] Flink parallelism
#   ENVIRONMENT_TYPE      [EXTERNAL] where the Python code runs:
#       EXTERNAL  the worker pool beside each TaskManager; ENVIRONMENT_CONFIG = its address
#                 as the TaskManager sees it [127.0.0.1:50000]
#       DOCKER    each TaskManager starts an SDK container (needs Docker there);
#                 ENVIRONMENT_CONFIG = an image with crackscan installed; SETUP_FILE is
#                 staged and installed at every container start otherwise
#       LOOPBACK  the Python code runs inside this script's process: for trying a cluster
#                 out, never for real volumes
#   ENVIRONMENT_CONFIG    [see above]
#   SDK_WORKER_PARALLELISM [slots per TaskManager] Python workers per TaskManager
#   SETUP_FILE            [<repo>/setup.py] staged for DOCKER workers only
#   PYTHON                [python3] interpreter with crackscan installed
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

INPUT="${1:-${INPUT:-}}"
MODEL_DIR="${2:-${MODEL_DIR:-}}"
OUT="${3:-${OUT:-}}"
FLINK_MODE="${FLINK_MODE:-flink}"
case "$FLINK_MODE" in
  flink)
    required_runner=(FLINK_MASTER "the Flink session cluster's REST address, HOST:8081")
    ;;
  portable)
    required_runner=(JOB_ENDPOINT "the Beam Flink job server's address, HOST:8099")
    ;;
  *)
    die "FLINK_MODE must be 'flink' or 'portable', got '$FLINK_MODE'"
    ;;
esac
require INPUT "argument 1: folder, glob or archive to score" \
        MODEL_DIR "argument 2: exported model folder" \
        OUT "argument 3: output folder or prefix" \
        "${required_runner[@]}"
shift $(($# < 3 ? $# : 3))

ENVIRONMENT_TYPE="${ENVIRONMENT_TYPE:-EXTERNAL}"
ENVIRONMENT_CONFIG="${ENVIRONMENT_CONFIG:-}"
SETUP_FILE="${SETUP_FILE:-$REPO_ROOT/setup.py}"

runner=()
if [[ "$FLINK_MODE" == flink ]]; then
  runner=(--runner=FlinkRunner --flink_master="$FLINK_MASTER"
          --flink_version="${FLINK_VERSION:-1.20}")
  if [[ -n "${FLINK_JOB_SERVER_JAR:-}" ]]; then
    runner+=(--flink_job_server_jar="$FLINK_JOB_SERVER_JAR")
  fi
else
  runner=(--runner=PortableRunner --job_endpoint="$JOB_ENDPOINT")
fi
if [[ -n "${PARALLELISM:-}" ]]; then
  runner+=(--parallelism="$PARALLELISM")
fi
if [[ -n "${SDK_WORKER_PARALLELISM:-}" ]]; then
  runner+=(--sdk_worker_parallelism="$SDK_WORKER_PARALLELISM")
fi

environment=(--environment_type="$ENVIRONMENT_TYPE")
case "$ENVIRONMENT_TYPE" in
  LOOPBACK) ;;
  EXTERNAL | DOCKER)
    if [[ "$ENVIRONMENT_TYPE" == EXTERNAL ]]; then
      environment+=(--environment_config="${ENVIRONMENT_CONFIG:-127.0.0.1:50000}")
    else
      [[ -f "$SETUP_FILE" ]] || die "SETUP_FILE $SETUP_FILE does not exist"
      environment+=(--setup_file="$SETUP_FILE")
      if [[ -n "$ENVIRONMENT_CONFIG" ]]; then
        environment+=(--environment_config="$ENVIRONMENT_CONFIG")
      fi
    fi
    for name in INPUT MODEL_DIR OUT; do
      if [[ "${!name}" != *://* ]]; then
        echo "warning: $name '${!name}' is a local path; every TaskManager must see it at" \
             "the same path (shared mount) or the job will find nothing" >&2
      fi
    done
    ;;
  *)
    die "ENVIRONMENT_TYPE must be EXTERNAL, DOCKER or LOOPBACK, got '$ENVIRONMENT_TYPE'"
    ;;
esac

set -x
exec "$PYTHON" -m pipeline.score \
  --input "$INPUT" \
  --model "$MODEL_DIR" \
  --output "$OUT" \
  "${runner[@]}" \
  "${environment[@]}" \
  "$@"
