#!/usr/bin/env bash
# On the H200: GPU tests, compute-sanitizer on a small case, then the
# benchmark. Expects dist/ (built here by scripts/make-dist.sh) in the tree.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export COMPACT_RT_LIBRARY=$PWD/dist/lib/libcompact_rt.so
export COMPACT_REFERENCE_LIBRARY=$PWD/dist/lib/libcompact_reference.so
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD/python:$PWD/python/tests${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
MODE=${1:-all}
if [ "$MODE" = all ] || [ "$MODE" = test ]; then
  echo "== GPU tests"
  python3 -m pytest -q --tb=short -p no:cacheprovider python/tests/test_gpu_kernels.py 2>&1 | tee "$OUT/gpu-tests.log" | tail -60
fi
if [ "$MODE" = all ] || [ "$MODE" = sanitize ]; then
  echo "== compute-sanitizer"
  for tool in memcheck racecheck synccheck initcheck; do
    compute-sanitizer --tool $tool --error-exitcode 9 python3 python/tests/sanitize_case.py \
      > "$OUT/sanitizer-$tool.log" 2>&1
    echo "$tool: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.log" | tail -1)"
  done
fi
if [ "$MODE" = all ] || [ "$MODE" = bench ]; then
  echo "== benchmark"
  python3 bench/bench.py --out "$OUT/bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
fi
