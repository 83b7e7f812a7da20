# shellcheck shell=bash
# Sourced by the launch scripts (not run on its own): where the repository is, which Python
# runs the pipeline, and one way of refusing to start when a setting is missing.
#
# Settings read here (environment):
#   PYTHON   interpreter with crackscan's dependencies installed (default: python3)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
# The scripts do not cd into the repository, so relative input paths keep meaning what the
# user typed; PYTHONPATH makes `python -m pipeline.score` importable from anywhere, also in
# the DirectRunner's worker processes, which inherit the environment.
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"

# die MESSAGE: print "<script>: MESSAGE" to stderr and exit 2 (a usage error, not a job failure).
die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

# require NAME HELP [NAME HELP ...]: exit naming every empty setting at once, so a first
# attempt does not turn into one failed start per forgotten variable.
require() {
  local missing=()
  while (($# >= 2)); do
    if [[ -z "${!1:-}" ]]; then
      missing+=("  $1: $2")
    fi
    shift 2
  done
  if ((${#missing[@]})); then
    {
      echo "$(basename "$0"): missing required settings:"
      printf '%s\n' "${missing[@]}"
      echo "See the header of $0 for what each one means."
    } >&2
    exit 2
  fi
}

# require_gcs NAME...: Dataflow workers cannot see this machine's disk.
require_gcs() {
  local name
  for name in "$@"; do
    [[ "${!name}" == gs://* ]] || die "$name must be a gs:// path for this runner, got '${!name}'"
  done
}
