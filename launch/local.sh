#!/usr/bin/env bash
# Score a local folder, glob or archive on this machine with Beam's DirectRunner, one worker
# process per core.
#
# Usage: launch/local.sh INPUT MODEL_DIR OUT [extra pipeline.score / Beam flags...]
#   INPUT      folder, glob or archive to score, e.g. ~/surveys/2024-06-01/ or 'flight*.zip'
#              (local paths or gs://; more inputs: add --input PATTERN to the extra flags)
#   MODEL_DIR  exported model folder (model_card.json + model.tflite and/or model.keras), e.g.
#              pipeline/default_model, the shipped field model
#   OUT        output folder or prefix
# The three can also be given as environment variables INPUT, MODEL_DIR and OUT.
#
# Optional environment:
#   PYTHON       interpreter with crackscan installed (default: python3)
#   NUM_WORKERS  worker processes (default: number of cores). Every worker loads its own copy
#                of TensorFlow and the model (roughly 1-2 GB each): lower it on small-memory
#                machines.
#
# Example: launch/local.sh ~/surveys/2024-06-01/ models/v3 out/2024-06-01 --report-top 30
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

INPUT="${1:-${INPUT:-}}"
MODEL_DIR="${2:-${MODEL_DIR:-}}"
OUT="${3:-${OUT:-}}"
require INPUT "argument 1: folder, glob or archive to score" \
        MODEL_DIR "argument 2: exported model folder" \
        OUT "argument 3: output folder or prefix"
shift $(($# < 3 ? $# : 3))

NUM_WORKERS="${NUM_WORKERS:-$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)}"

set -x
exec "$PYTHON" -m pipeline.score \
  --input "$INPUT" \
  --model "$MODEL_DIR" \
  --output "$OUT" \
  --runner=DirectRunner \
  --direct_running_mode=multi_processing \
  --direct_num_workers="$NUM_WORKERS" \
  "$@"
