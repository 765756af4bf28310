#!/usr/bin/env bash
# Times `make test-fast` (ruff, then the unit tests without the `slow` marker) and prints the wall time, the
# 10 slowest tests and the CPU's vector extensions; the tier is meant to stay under 3 minutes on 2 cores.
#   bash benchmarks/test_fast_time.sh       (after `make install`; PYTHON_BIN=/path/to/venv/bin to use another venv)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PYTHON_BIN:-.venv/bin}
export PYSPARK_PYTHON="$bin/python" VLLM_ENABLE_V1_MULTIPROCESSING=0
start=$(date +%s)
"$bin/ruff" check .
"$bin/python" -m pytest -q -p no:cacheprovider -m 'not slow' --durations=10 tests/unit | tail -n 14
echo "make test-fast: $(( $(date +%s) - start )) s wall on $(nproc) cores," \
  "CPU flags: $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
