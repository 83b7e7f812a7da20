#!/usr/bin/env bash
# Score a survey archive on an Apache Flink cluster, in one of two ways (FLINK_MODE):
#
#   flink     (default) Beam's FlinkRunner submits to a Flink *session cluster*'s REST
#             endpoint, FLINK_MASTER=HOST:8081. It starts a Beam Flink job server locally
#             for the submission, which needs Java 11+ here and either internet access (Beam
#             downloads beam-runners-flink-<FLINK_VERSION>-job-server-<beam version>.jar from
#             Maven Central) or that jar given as FLINK_JOB_SERVER_JAR.
#   portable  the PortableRunner talks to an already running Beam Flink *job server*,
#             JOB_ENDPOINT=HOST:8099, e.g. started next to the cluster with
#               docker run --net=host apache/beam_flink1.19_job_server:2.77.0 \
#                 --flink-master=FLINK_HOST:8081
#             Nothing but Python is needed on this machine.
#
# Usage: launch/flink.sh INPUT MODEL_DIR OUT [extra pipeline.score / Beam flags...]
#   INPUT, MODEL_DIR, OUT  as for local.sh. Unless ENVIRONMENT_TYPE=LOOPBACK the Python
#   workers run on the task managers, so all three must be paths every task manager can
#   reach: gs:// (apache-beam[gcp]), s3:// (apache-beam[aws]), hdfs:// or a shared mount.
# The three can also be given as environment variables INPUT, MODEL_DIR and OUT.
#
# Fill in (required environment):
#   FLINK_MASTER    flink mode: the session cluster's REST address, HOST:8081
#   FLINK_VERSION   flink mode: the cluster's Flink version, major.minor (1.19, 1.20, 2.0, ...);
#                   the job server must match it, there is no safe default
#   JOB_ENDPOINT    portable mode: the job server's address, HOST:8099
# Optional environment (defaults in brackets):
#   FLINK_MODE            [flink] flink | portable
#   FLINK_JOB_SERVER_JAR  [unset] local path or URL of the job server jar (flink mode, offline)
#   PARALLELISM           [4] Flink parallelism; set it to the cluster's free task slots
#   ENVIRONMENT_TYPE      [DOCKER] where the Python code runs:
#       DOCKER    each task manager starts an SDK container (needs Docker on the task managers);
#                 ENVIRONMENT_CONFIG = image with crackscan's dependencies preinstalled,
#                 default Beam's stock apache/beam_python3.X_sdk image, into which SETUP_FILE
#                 installs crackscan + TensorFlow at every start (needs PyPI access)
#       EXTERNAL  a Beam worker pool already runs beside each task manager (the usual choice
#                 on Kubernetes); ENVIRONMENT_CONFIG = its address, e.g. localhost:50000
#       PROCESS   task managers start a boot binary; ENVIRONMENT_CONFIG = '{"command": "..."}'
#       LOOPBACK  the Python code runs inside this script's process: for trying a cluster
#                 out, never for real volumes (all data flows through this machine, and the
#                 task managers must be able to connect back to it)
#   ENVIRONMENT_CONFIG    [see above]
#   SDK_WORKER_PARALLELISM [1] Python worker processes per task manager; with 1, a task
#                 manager scores on one core only, so set it to the slots per task manager
#   SETUP_FILE            [<repo>/setup.py] staged for the workers (not used with LOOPBACK)
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
    required_runner=(FLINK_MASTER "the Flink session cluster's REST address, HOST:8081"
                     FLINK_VERSION "the cluster's Flink version, e.g. 1.19")
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

PARALLELISM="${PARALLELISM:-4}"
ENVIRONMENT_TYPE="${ENVIRONMENT_TYPE:-DOCKER}"
ENVIRONMENT_CONFIG="${ENVIRONMENT_CONFIG:-}"
SDK_WORKER_PARALLELISM="${SDK_WORKER_PARALLELISM:-1}"
SETUP_FILE="${SETUP_FILE:-$REPO_ROOT/setup.py}"
FLINK_JOB_SERVER_JAR="${FLINK_JOB_SERVER_JAR:-}"

runner=()
if [[ "$FLINK_MODE" == flink ]]; then
  runner=(--runner=FlinkRunner --flink_master="$FLINK_MASTER" --flink_version="$FLINK_VERSION")
  if [[ -n "$FLINK_JOB_SERVER_JAR" ]]; then
    runner+=(--flink_job_server_jar="$FLINK_JOB_SERVER_JAR")
  fi
else
  runner=(--runner=PortableRunner --job_endpoint="$JOB_ENDPOINT")
fi

environment=(--environment_type="$ENVIRONMENT_TYPE")
case "$ENVIRONMENT_TYPE" in
  LOOPBACK) ;;
  DOCKER | EXTERNAL | PROCESS)
    if [[ -n "$ENVIRONMENT_CONFIG" ]]; then
      environment+=(--environment_config="$ENVIRONMENT_CONFIG")
    elif [[ "$ENVIRONMENT_TYPE" != DOCKER ]]; then
      die "ENVIRONMENT_TYPE=$ENVIRONMENT_TYPE needs ENVIRONMENT_CONFIG (see the header)"
    fi
    [[ -f "$SETUP_FILE" ]] || die "SETUP_FILE $SETUP_FILE does not exist"
    environment+=(--setup_file="$SETUP_FILE" --sdk_worker_parallelism="$SDK_WORKER_PARALLELISM")
    for name in INPUT MODEL_DIR OUT; do
      if [[ "${!name}" != *://* ]]; then
        echo "warning: $name '${!name}' is a local path; the task managers must see it at" \
             "the same path (shared mount) or the job will find nothing" >&2
      fi
    done
    ;;
  *)
    die "ENVIRONMENT_TYPE must be DOCKER, EXTERNAL, PROCESS or LOOPBACK, got '$ENVIRONMENT_TYPE'"
    ;;
esac

set -x
exec "$PYTHON" -m pipeline.score \
  --input "$INPUT" \
  --model "$MODEL_DIR" \
  --output "$OUT" \
  "${runner[@]}" \
  --parallelism="$PARALLELISM" \
  "${environment[@]}" \
  "$@"
