#!/usr/bin/env bash
# The main job, unchanged, on a real Spark standalone cluster on this machine: a master and two workers
# started from the pyspark distribution (loopback only), the project shipped to the driver and the executors
# as the wheel built from pyproject.toml, `spark-submit --master spark://...` on the sample data, the tables
# checked, and the cluster stopped on exit (also on failure or Ctrl-C).
#
#   tests/cluster/standalone_cluster.sh                       # the whole job, models built on the driver
#   tests/cluster/standalone_cluster.sh --stages ingest,segment,models,augment,curate --iterations 1 \
#       --set models.base=/m/tiny --set models.backward=/m/tiny --set models.seed_model=/m/tiny   # what CI runs
#
# Arguments are appended to `jobs/augment.py --config conf/tiny.yaml --set storage.root=... --set models.dir=...
# --set report.dir=...` (every output under the work folder).
# The driver and the executors run an interpreter that sees the dependencies of $PYTHON but not the project
# (no editable install, no PYTHONPATH), so every import of jobs/udfs/training comes from the shipped wheel.
# Environment: PYTHON (default .venv/bin/python), CLUSTER_DIR (work folder, kept; default a temp folder,
# removed after a successful run), WORKER_CORES (1), WORKER_MEMORY (1500m), EXECUTOR_MEMORY (1g).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
WORK=${CLUSTER_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/humpback-cluster.XXXXXX")}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
SPARK_HOME=$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
export SPARK_HOME SPARK_LOCAL_IP=127.0.0.1 SPARK_MASTER_HOST=127.0.0.1 SPARK_IDENT_STRING=humpback
export SPARK_LOG_DIR=$WORK/logs SPARK_PID_DIR=$WORK/pids SPARK_LOCAL_DIRS=$WORK/local
export SPARK_CONF_DIR=$WORK/spark-conf  # an empty one: nothing from the machine's Spark settings
mkdir -p "$SPARK_LOG_DIR" "$SPARK_PID_DIR" "$SPARK_LOCAL_DIRS" "$SPARK_CONF_DIR"
MASTER_CLASS=org.apache.spark.deploy.master.Master
WORKER_CLASS=org.apache.spark.deploy.worker.Worker
log() { echo "[cluster $(date +%T)] $*"; }

stop_cluster() {
    local pids=() pidfile
    for pidfile in "$SPARK_PID_DIR"/*.pid; do [ -f "$pidfile" ] && pids+=("$(cat "$pidfile")"); done
    for i in 1 2; do "$SPARK_HOME/sbin/spark-daemon.sh" stop "$WORKER_CLASS" "$i" >/dev/null; done  # workers end their executors
    "$SPARK_HOME/sbin/spark-daemon.sh" stop "$MASTER_CLASS" 1 >/dev/null
    for _ in $(seq 30); do
        local alive=0 pid
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.5
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null && log "killed $pid (did not stop in 15 s)"; done
    log "cluster stopped (pids ${pids[*]})"
}

on_exit() {
    local status=$?
    stop_cluster
    if [ "$status" = 0 ] && [ -z "${CLUSTER_DIR:-}" ]; then
        rm -rf "$WORK"
    else
        log "work folder kept: $WORK (logs: $SPARK_LOG_DIR, executors: $WORK/worker-*/app-*)"
    fi
    exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# The code as it would be deployed: a wheel from pyproject.toml. Spark puts .zip files (not .whl) on the
# executors' Python path; a pure-Python wheel is a zip with the packages at its root, so it is shipped as one.
log "building the wheel"
mkdir -p "$WORK/src"
cp -r pyproject.toml README.md jobs udfs training "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/humpback_spark-*.whl)
cp "$WHEEL" "$WORK/humpback_spark.zip"

# An interpreter with the dependencies of $PYTHON but not the project: its site-packages is added by a
# .pth line, and .pth files there (the editable install's import hook) are not run.
"$PYTHON" -m venv --without-pip "$WORK/python"
NODE_PYTHON=$WORK/python/bin/python
"$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("purelib"))' \
    > "$("$NODE_PYTHON" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/dependencies.pth"
unset PYTHONPATH
# Without the wheel neither the driver's entry point nor an executor (whose cwd is its work dir) can import the project.
if "$NODE_PYTHON" jobs/augment.py --help >/dev/null 2>&1 || (cd "$WORK" && "$NODE_PYTHON" -c 'import udfs' 2>/dev/null); then
    echo "the node interpreter imports the project without the wheel: is it installed in $PYTHON's site-packages?" >&2
    exit 1
fi
"$NODE_PYTHON" -c 'import pyspark, deltalake, vllm, torch' || { echo "the node interpreter lacks dependencies" >&2; exit 1; }

log "starting the master and two workers (127.0.0.1)"
"$SPARK_HOME/sbin/spark-daemon.sh" start "$MASTER_CLASS" 1 --host 127.0.0.1 --port 0 --webui-port 0 >/dev/null
MASTER_LOG=$(ls "$SPARK_LOG_DIR"/*Master-1-*.out)
for _ in $(seq 120); do grep -q "MasterWebUI.*started at" "$MASTER_LOG" && break; sleep 0.5; done
MASTER_URL=$(grep -o "Starting Spark master at spark://[0-9.:]*" "$MASTER_LOG" | awk '{print $NF}')
MASTER_UI=$(grep -o "MasterWebUI.*started at http://[^ ]*" "$MASTER_LOG" | grep -o "http://[^ ]*")
[ -n "$MASTER_URL" ] && [ -n "$MASTER_UI" ] || { echo "master did not start:" >&2; tail -20 "$MASTER_LOG" >&2; exit 1; }
for i in 1 2; do
    "$SPARK_HOME/sbin/spark-daemon.sh" start "$WORKER_CLASS" "$i" --host 127.0.0.1 --port 0 --webui-port 0 \
        --cores "${WORKER_CORES:-1}" --memory "${WORKER_MEMORY:-1500m}" --work-dir "$WORK/worker-$i" "$MASTER_URL" >/dev/null
done
master_state() { "$NODE_PYTHON" -c "import json, sys, urllib.request; print(json.load(urllib.request.urlopen('$MASTER_UI/json/'))$1)"; }
for _ in $(seq 120); do [ "$(master_state "['aliveworkers']")" = 2 ] && break; sleep 0.5; done
[ "$(master_state "['aliveworkers']")" = 2 ] || { echo "the workers did not register" >&2; exit 1; }
log "master $MASTER_URL, 2 workers alive"

log "spark-submit jobs/augment.py $*"
start=$(date +%s)
PYSPARK_PYTHON=$NODE_PYTHON PYSPARK_DRIVER_PYTHON=$NODE_PYTHON "$SPARK_HOME/bin/spark-submit" \
    --master "$MASTER_URL" --py-files "$WORK/humpback_spark.zip" \
    --driver-memory 3g --executor-memory "${EXECUTOR_MEMORY:-1g}" --executor-cores 1 --total-executor-cores 2 \
    --conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1 --conf spark.ui.enabled=false \
    jobs/augment.py --config conf/tiny.yaml --set "storage.root=$WORK/tables" --set "models.dir=$WORK/models" \
    --set "report.dir=$WORK/reports" "$@" \
    > "$SPARK_LOG_DIR/job.log" 2>&1 || { tail -40 "$SPARK_LOG_DIR/job.log" >&2; exit 1; }
log "job finished in $(( $(date +%s) - start )) s"
awk '/^run [0-9a-f]+$/ {summary = 1; print; next} summary && /^  / {print; next} {summary = 0}' "$SPARK_LOG_DIR/job.log"

"$NODE_PYTHON" tests/cluster/check_tables.py "$WORK/tables" "$WORK"/worker-1 "$WORK"/worker-2
log "ok"
