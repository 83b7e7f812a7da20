#!/usr/bin/env bash
# A local Apache Flink session cluster for scoring with Beam's FlinkRunner, all on 127.0.0.1:
# a JobManager, two TaskManagers of two slots each, and a Beam worker pool (the Python SDK
# workers of the EXTERNAL environment), with a fixed-delay restart strategy so that a lost
# TaskManager costs a retry, not the run.
#
# Usage: launch/flink_local.sh COMMAND
#   start      assemble Flink on first use, fetch the job server jar, start the processes
#   status     the Flink master, the dashboard and each started process with its pid
#   stop       end exactly the processes start started, by their pids
#   fetch-jar  fetch Beam's Flink job server jar only (crackscan-score needs it to submit)
#
# Nothing is installed into the project's environment. On first use Flink 1.20.5 is put
# together from PyPI alone (apache-flink-libraries: lib/ jars; the apache-flink wheel: bin/
# and conf/), and the job server jar org.apache.beam:beam-runners-flink-1.20-job-server of the
# installed Beam version is fetched with Maven; both are cached under $CRACKSCAN_CACHE_DIR.
#
# Needs: Java 11+ (java on the PATH or JAVA_HOME), Maven (mvn), and PYTHON with crackscan.
# Optional environment (defaults in brackets):
#   PYTHON                [<repo>/.venv/bin/python, else python3] runs the worker pool
#   CRACKSCAN_CACHE_DIR   [${XDG_CACHE_HOME:-~/.cache}/crackscan] downloads and cluster state
#   FLINK_REST_PORT       [8081] JobManager REST API and dashboard
#   FLINK_RPC_PORT        [6123] JobManager RPC
#   WORKER_POOL_PORT      [50000] Beam worker pool
#   FLINK_JOB_SERVER_JAR  [unset] a job server jar obtained elsewhere, copied into the cache
#                         instead of fetching it (for machines whose Maven cannot serve it)
set -euo pipefail
if [[ -z "${PYTHON:-}" && -x "$(dirname "${BASH_SOURCE[0]}")/../.venv/bin/python" ]]; then
  PYTHON="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/python"
fi
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

COMMAND="${1:-}"
require COMMAND "start, status, stop or fetch-jar (see the header of this script)"

FLINK_VERSION=1.20.5
FLINK_MINOR=1.20
TASK_MANAGERS=2
SLOTS_PER_TASK_MANAGER=2
FLINK_REST_PORT="${FLINK_REST_PORT:-8081}"
FLINK_RPC_PORT="${FLINK_RPC_PORT:-6123}"
WORKER_POOL_PORT="${WORKER_POOL_PORT:-50000}"
CACHE="${CRACKSCAN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/crackscan}"
FLINK_HOME="$CACHE/flink-$FLINK_VERSION"
STATE="$CACHE/flink-local"
PROCESSES="$STATE/processes"

# fail MESSAGE: one line naming what is wrong and how to fix it, exit 1.
fail() {
  echo "flink_local.sh: $*" >&2
  exit 1
}

java_command() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null; then
    command -v java
  else
    fail "Java is missing: Flink needs Java 11 or 17 (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
  fi
}

check_java() {
  local java version major
  java="$(java_command)"
  version="$("$java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
  major="${version%%.*}"
  if [[ ! "$major" =~ ^[0-9]+$ ]] || ((major < 11)); then
    fail "Java $version at $java is too old: Flink $FLINK_MINOR needs Java 11 or 17 (set JAVA_HOME)"
  fi
  export JAVA_HOME="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$java")")")}"
}

beam_version() {
  "$PYTHON" -c 'import apache_beam; print(apache_beam.__version__)' 2>/dev/null ||
    fail "$PYTHON cannot import apache_beam: set PYTHON to the interpreter crackscan is installed in"
}

job_server_jar() {
  echo "$CACHE/jars/beam-runners-flink-$FLINK_MINOR-job-server-$(beam_version).jar"
}

# listening PORT: whether something accepts connections on 127.0.0.1:PORT.
listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Flink from PyPI: the libraries sdist holds lib/, opt/ and plugins/, the wheel bin/ and conf/.
assemble_flink() {
  [[ -f "$FLINK_HOME/lib/flink-dist-$FLINK_VERSION.jar" ]] && return
  local download unpacked
  download="$(mktemp -d)"
  unpacked="$FLINK_HOME.partial"
  rm -rf "$unpacked"
  echo "assembling Flink $FLINK_VERSION from PyPI into $FLINK_HOME (once)" >&2
  # The wheel's bin/ and conf/ are the same on every platform; naming one makes pip choose
  # a wheel that exists whatever the local Python version.
  if ! { "$PYTHON" -m pip download --quiet --no-deps --dest "$download" \
           "apache-flink-libraries==$FLINK_VERSION" &&
         "$PYTHON" -m pip download --quiet --no-deps --dest "$download" --only-binary=:all: \
           --python-version 3.11 --platform manylinux2014_x86_64 "apache-flink==$FLINK_VERSION"
       } >"$download/pip.log" 2>&1; then
    fail "cannot download Flink $FLINK_VERSION from PyPI ($(grep -m1 -i error "$download/pip.log" || tail -n 1 "$download/pip.log")): check that pip reaches PyPI"
  fi
  mkdir -p "$unpacked"
  tar -xzf "$download"/apache_flink_libraries-"$FLINK_VERSION".tar.gz -C "$download"
  mv "$download/apache_flink_libraries-$FLINK_VERSION/deps/"{lib,opt,plugins} "$unpacked/"
  "$PYTHON" -m zipfile -e "$download"/apache_flink-"$FLINK_VERSION"-*.whl "$download/wheel"
  mv "$download/wheel/pyflink/"{bin,conf} "$unpacked/"
  mv "$download/apache_flink_libraries-$FLINK_VERSION/deps/bin/bash-java-utils.jar" "$unpacked/bin/"
  chmod +x "$unpacked"/bin/*.sh "$unpacked/bin/flink"
  rm -rf "$download" "$FLINK_HOME"
  mv "$unpacked" "$FLINK_HOME"
}

fetch_jar() {
  local jar artifact download reason
  jar="$(job_server_jar)"
  [[ -f "$jar" ]] && return
  mkdir -p "$(dirname "$jar")"
  if [[ -n "${FLINK_JOB_SERVER_JAR:-}" ]]; then
    [[ -f "$FLINK_JOB_SERVER_JAR" ]] || fail "FLINK_JOB_SERVER_JAR $FLINK_JOB_SERVER_JAR does not exist"
    cp "$FLINK_JOB_SERVER_JAR" "$jar.partial" && mv "$jar.partial" "$jar"
    return
  fi
  artifact="org.apache.beam:beam-runners-flink-$FLINK_MINOR-job-server:$(beam_version)"
  command -v mvn >/dev/null ||
    fail "Maven is missing: it fetches $artifact (apt-get install maven), or set FLINK_JOB_SERVER_JAR to that jar"
  download="$(mktemp -d)"
  echo "fetching $artifact with Maven into $(dirname "$jar") (once)" >&2
  # -U: ask the repository again, not Maven's cached memory of an earlier failure.
  if ! mvn --batch-mode --quiet --update-snapshots dependency:copy -Dartifact="$artifact" \
      -DoutputDirectory="$download" >"$download/mvn.log" 2>&1; then
    reason="$(grep -m1 -Eo 'Could not (find|transfer) artifact [^ ]+( from/to)? (in )?[^ ]+' \
      "$download/mvn.log" || grep -m1 ERROR "$download/mvn.log")"
    rm -rf "$download"
    fail "the Beam job server jar $artifact cannot be fetched ($reason): set FLINK_JOB_SERVER_JAR to a copy of it, or pass crackscan-score --flink_job_server_jar PATH"
  fi
  mv "$download"/*.jar "$jar"
  rm -rf "$download"
}

write_config() {
  local conf="$STATE/conf"
  mkdir -p "$conf" "$STATE/log"
  cp "$FLINK_HOME"/conf/log4j*.properties "$conf/"
  {
    # Java 17 needs these opens for Flink's reflection; they come from Flink's own config.yaml.
    grep -m1 '^ *all: --add' "$FLINK_HOME/conf/config.yaml" | sed 's/^ *all:/env.java.opts.all:/'
    cat <<EOF
jobmanager.rpc.address: localhost
jobmanager.rpc.port: $FLINK_RPC_PORT
jobmanager.bind-host: 127.0.0.1
jobmanager.memory.process.size: 1024m
taskmanager.bind-host: 127.0.0.1
taskmanager.host: localhost
taskmanager.numberOfTaskSlots: $SLOTS_PER_TASK_MANAGER
taskmanager.memory.process.size: 1024m
rest.address: localhost
rest.bind-address: 127.0.0.1
rest.port: $FLINK_REST_PORT
parallelism.default: $((TASK_MANAGERS * SLOTS_PER_TASK_MANAGER))
restart-strategy.type: fixed-delay
restart-strategy.fixed-delay.attempts: 3
restart-strategy.fixed-delay.delay: 5 s
heartbeat.interval: 2000
heartbeat.timeout: 15000
EOF
  } >"$conf/config.yaml"
}

# launch ROLE COMMAND...: start COMMAND in the background, logging to the state folder, and
# record "ROLE<TAB>PID" so that status and stop know it.
launch() {
  local role="$1" log
  shift
  log="$STATE/log/$(echo "$role" | tr ' ' '-')-$(wc -l <"$PROCESSES").log"
  FLINK_CONF_DIR="$STATE/conf" FLINK_LOG_DIR="$STATE/log" FLINK_PID_DIR="$STATE/pids" \
    nohup "$@" </dev/null >"$log" 2>&1 &
  printf '%s\t%s\t%s\n' "$role" "$!" "$log" >>"$PROCESSES"
}

rest_overview() {
  "$PYTHON" - "$FLINK_REST_PORT" <<'EOF' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/overview", timeout=2) as reply:
    overview = json.load(reply)
print(overview["taskmanagers"], overview["slots-total"])
EOF
}

# every_process_runs: whether each recorded process is still alive, naming the first that is not.
every_process_runs() {
  local role pid log
  while IFS=$'\t' read -r role pid log; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$role (pid $pid) exited: $(grep -m1 -E 'ERROR|Exception|Error' "$log" || tail -n 1 "$log")"
      return 1
    fi
  done <"$PROCESSES"
}

wait_until_ready() {
  local deadline=$((SECONDS + 120)) dead
  until [[ "$(rest_overview)" == "$TASK_MANAGERS $((TASK_MANAGERS * SLOTS_PER_TASK_MANAGER))" ]] &&
      listening "$WORKER_POOL_PORT"; do
    if ! dead="$(every_process_runs)"; then
      stop_processes
      fail "the cluster did not start: $dead (logs: $STATE/log)"
    fi
    ((SECONDS < deadline)) || { stop_processes; fail "the cluster did not come up within 120 s (logs: $STATE/log)"; }
    sleep 1
  done
}

start() {
  local port role
  if [[ -f "$PROCESSES" ]]; then
    if any_process_runs; then
      fail "a local cluster is already started (launch/flink_local.sh status); stop it first with launch/flink_local.sh stop"
    fi
    # Every process of an earlier start is gone (a reboot, a kill): its record is stale.
    rm -f "$PROCESSES"
  fi
  check_java
  for port in "$FLINK_REST_PORT:FLINK_REST_PORT (REST API)" "$FLINK_RPC_PORT:FLINK_RPC_PORT (JobManager RPC)" \
      "$WORKER_POOL_PORT:WORKER_POOL_PORT (worker pool)"; do
    role="${port#*:}"
    if listening "${port%%:*}"; then
      fail "port ${port%%:*} is in use by another process: stop it, or choose another port with ${role%% *}=PORT ${role#* }"
    fi
  done
  beam_version >/dev/null
  assemble_flink
  # The cluster does not need the jar, only crackscan-score's submission does: without it the
  # cluster still starts, and the one-line reason stays on screen.
  if ! (fetch_jar); then
    echo "flink_local.sh: starting the cluster without the job server jar; crackscan-score --runner FlinkRunner will refuse to submit until it is there" >&2
  fi
  write_config
  mkdir -p "$STATE"
  : >"$PROCESSES"
  launch JobManager "$FLINK_HOME/bin/jobmanager.sh" start-foreground
  for _ in $(seq "$TASK_MANAGERS"); do
    launch TaskManager "$FLINK_HOME/bin/taskmanager.sh" start-foreground
  done
  launch "worker pool" "$PYTHON" -m pipeline.worker_pool --address "127.0.0.1:$WORKER_POOL_PORT"
  wait_until_ready
  status
}

status() {
  local role pid log state
  [[ -f "$PROCESSES" ]] || fail "no local Flink cluster is started: run launch/flink_local.sh start"
  echo "Flink master: localhost:$FLINK_REST_PORT"
  echo "dashboard: http://localhost:$FLINK_REST_PORT"
  local jar
  jar="$(job_server_jar)"
  [[ -f "$jar" ]] || jar="missing ($jar): launch/flink_local.sh fetch-jar says why"
  echo "job server jar: $jar"
  while IFS=$'\t' read -r role pid log; do
    state=running
    ours "$pid" || state="not running"
    echo "$role: pid $pid ($state)"
  done <"$PROCESSES"
}

# ours PID: whether PID is still a process this script started (and not another that reuses
# the number): Flink's JVMs run from the cache, the worker pool is pipeline.worker_pool.
ours() {
  local command
  command="$(ps -o command= -p "$1" 2>/dev/null)" || return 1
  [[ "$command" == *"$CACHE"* || "$command" == *pipeline.worker_pool* ]]
}

any_process_runs() {
  local role pid log
  while IFS=$'\t' read -r role pid log; do
    if ours "$pid"; then
      return 0
    fi
  done <"$PROCESSES"
  return 1
}

# stop_processes: TERM each recorded process, KILL what is left after 20 s, forget them all.
stop_processes() {
  local role pid log pids=() deadline=$((SECONDS + 20))
  while IFS=$'\t' read -r role pid log; do
    if ours "$pid"; then
      kill "$pid"
      pids+=("$pid")
    fi
  done <"$PROCESSES"
  for pid in "${pids[@]}"; do
    while ours "$pid" && ((SECONDS < deadline)); do
      sleep 0.5
    done
    if ours "$pid"; then
      kill -9 "$pid"
    fi
  done
  rm -f "$PROCESSES"
  rm -rf "$STATE/pids"
}

case "$COMMAND" in
  start) start ;;
  status) status ;;
  stop)
    [[ -f "$PROCESSES" ]] || fail "no local Flink cluster is started: nothing to stop"
    stop_processes
    echo "stopped"
    ;;
  fetch-jar)
    fetch_jar
    job_server_jar
    ;;
  *) die "COMMAND must be start, status, stop or fetch-jar, got '$COMMAND'" ;;
esac
