#!/usr/bin/env bash
# Score one night of survey photos: $SURVEY_ROOT/YYYY-MM-DD/ -> $OUTPUT_ROOT/dt=YYYY-MM-DD/.
#
# Usage: launch/nightly.sh [YYYY-MM-DD] [extra pipeline.score / Beam flags...]
#   The date defaults to yesterday (local time; set TZ to change): a run in the early
#   morning scores the night that just ended.
#
# Re-runs are cheap: when the night already has output (an earlier run, a run that failed
# part-way, photos uploaded late), that output is first moved to
# $OUTPUT_ROOT/_previous/dt=YYYY-MM-DD/ and given to the pipeline as --skip-scored, so only
# the images it does not hold are scored again. The new output never lands on top of the
# old one, which would otherwise leave stale shards of a differently sharded earlier run.
#
# Fill in (required environment, e.g. in the file named by CRACKSCAN_ENV):
#   SURVEY_ROOT   where the nightly folders arrive (local path or gs://)
#   OUTPUT_ROOT   where the dt=YYYY-MM-DD partitions go (local path or gs://)
#   MODEL_DIR     model folder to score with (model_card.json + model.tflite and/or
#                 model.keras), e.g. pipeline/default_model, the shipped field model
#   plus what the chosen runner script needs (PROJECT, REGION, BUCKET for dataflow.sh;
#   see its header)
# Optional environment (defaults in brackets):
#   CRACKSCAN_ENV   [unset] file of VAR=value lines to source first (keeps the crontab short)
#   RUNNER          [local] local | dataflow | flink: which launch/<RUNNER>.sh runs the job
#   NIGHT           [yesterday] the night to score, YYYY-MM-DD (the first argument wins)
#   PIPELINE_FLAGS  [unset] extra flags, split on spaces, e.g. "--report-top 50
#                   --bigquery-table my-project:inspection.cracks"
#   LOG_DIR         [<repo>/runs/nightly] one log file per run, named after night and start
#   PYTHON          [python3] interpreter with crackscan installed
#
# Exit status: the runner's (0 only when the night was scored), 2 for a usage error,
# 75 when a run for the same night is still going.
set -euo pipefail
if [[ -n "${CRACKSCAN_ENV:-}" ]]; then
  # Exported, so that the runner scripts see PROJECT, REGION, ... set there.
  set -a
  # shellcheck source=/dev/null
  source "$CRACKSCAN_ENV"
  set +a
fi
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ $# -gt 0 && "$1" != -* ]]; then
  NIGHT="$1"
  shift
fi
NIGHT="${NIGHT:-$(date -d yesterday +%F 2>/dev/null || date -v-1d +%F)}"
RUNNER="${RUNNER:-local}"
require SURVEY_ROOT "where the nightly YYYY-MM-DD/ folders arrive (local path or gs://)" \
        OUTPUT_ROOT "where the dt=YYYY-MM-DD/ partitions are written (local path or gs://)" \
        MODEL_DIR "model folder to score with"
[[ "$NIGHT" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || die "NIGHT must be YYYY-MM-DD, got '$NIGHT'"
case "$RUNNER" in
  local | dataflow | flink) ;;
  *) die "RUNNER must be local, dataflow or flink, got '$RUNNER'" ;;
esac

INPUT="${SURVEY_ROOT%/}/$NIGHT/"
OUT="${OUTPUT_ROOT%/}/dt=$NIGHT/"
PREVIOUS="${OUTPUT_ROOT%/}/_previous/dt=$NIGHT/"
RUN_ID="$(date -u +%Y%m%dt%H%M%Sz)"
LOG_DIR="${LOG_DIR:-$REPO_ROOT/runs/nightly}"
LOG_FILE="$LOG_DIR/$NIGHT-$RUN_ID.log"
read -r -a pipeline_flags <<<"${PIPELINE_FLAGS:-}"

mkdir -p "$LOG_DIR"
# Two runs of one night (cron plus a manual re-run) would move each other's output away.
if command -v flock >/dev/null; then
  exec 9>"$LOG_DIR/$NIGHT.lock"
  flock -n 9 || { echo "$(basename "$0"): a run for $NIGHT is still going" >&2; exit 75; }
fi
# Silent on success when run from cron, which mails whatever a job prints.
if [[ -t 2 ]]; then
  echo "$(basename "$0"): scoring $INPUT with $RUNNER, log: $LOG_FILE" >&2
fi
exec 3>&2 >>"$LOG_FILE" 2>&1

# Moves the night's existing output to $PREVIOUS (replacing an older copy there) and prints
# the folder to give as --skip-scored, or nothing on a first run. Only a finished output
# replaces $PREVIOUS: the files of a run killed or failed part-way are deleted, so $PREVIOUS
# keeps the last finished output for the next try. What "finished" means is
# pipeline/run_status.py's rule, the one --skip-scored applies too.
previous_output() {
  "$PYTHON" -m pipeline.run_status rotate "$OUT" "$PREVIOUS"
}

echo "=== $(date -u +%FT%TZ) night $NIGHT, runner $RUNNER, run $RUN_ID"
skip=()
previous="$(previous_output)" || {
  echo "$(basename "$0"): could not check $OUT for an earlier output, see $LOG_FILE" >&3
  exit 1
}
if [[ -n "$previous" ]]; then
  echo "re-run: reusing the scores in $previous"
  skip=(--skip-scored "$previous")
fi

export JOB_NAME="${JOB_NAME:-crackscan-nightly-$NIGHT-$RUN_ID}"
status=0
"$REPO_ROOT/launch/$RUNNER.sh" "$INPUT" "$MODEL_DIR" "$OUT" \
  ${skip[@]+"${skip[@]}"} ${pipeline_flags[@]+"${pipeline_flags[@]}"} "$@" || status=$?

echo "=== $(date -u +%FT%TZ) finished with exit status $status"
if ((status != 0)); then
  echo "$(basename "$0"): scoring $NIGHT failed (exit $status), see $LOG_FILE" >&3
fi
exit "$status"
