#!/usr/bin/env bash
# Times the embedded-default job from scratch, then its re-run, and prints the per-stage summary of each.
#   bash benchmarks/demo_time.sh            (after `make install`; writes under work/bench/)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYSPARK_PYTHON="$PWD/.venv/bin/python" PYSPARK_DRIVER_PYTHON="$PWD/.venv/bin/python" VLLM_ENABLE_V1_MULTIPROCESSING=0
root=work/bench
rm -rf "$root"
for run in first re-run; do
  start=$(date +%s)
  .venv/bin/spark-submit jobs/augment.py --config conf/local.yaml --set storage.root=$root/tables --set models.dir=$root/models \
    2>/dev/null | sed -n '/^run /,$p'
  echo "$run: $(( $(date +%s) - start )) s wall"
done
