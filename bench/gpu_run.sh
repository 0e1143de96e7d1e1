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
export COMPACT_COMMIT=${COMPACT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export PYTHONPATH=$PWD/python:$PWD/python/tests${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
MODE=${1:-all}
if [ "$MODE" = all ] || [ "$MODE" = test ]; then
  echo "== GPU tests"
  python3 -m pytest -q --tb=short -p no:cacheprovider python/tests 2>&1 | tee "$OUT/gpu-tests.log" | tail -60
fi
if [ "$MODE" = all ] || [ "$MODE" = sanitize ]; then
  echo "== compute-sanitizer"
  for tool in memcheck racecheck synccheck initcheck; do
    compute-sanitizer --tool $tool --error-exitcode 9 python3 python/tests/sanitize_case.py \
      > "$OUT/sanitizer-$tool.log" 2>&1
    echo "$tool: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.log" | tail -1)"
  done
fi
if [ "$MODE" = report ]; then
  # The committed report: last chunk and selection at every context, the
  # whole-prefill grid, and the alpha sweep of the fidelity frontier; each
  # part bounded so one failure leaves the others.
  echo "== last chunk"
  timeout 150 python3 bench/bench.py --out "$OUT/last-chunk.json" 2>&1 | tee "$OUT/last-chunk.log"
  echo "== whole-prefill grid"
  timeout 300 python3 bench/prefill_bench.py --out "$OUT/prefill-grid.json" \
    --methods sdpa,flex_sparse,compact_dense,compact \
    --configs "${GRID:-1:512:32768,1:512:65536,1:512:131072,1:1024:32768,1:1024:65536,1:1024:131072,1:2048:32768,1:2048:65536,1:2048:131072,8:512:32768,8:512:65536,8:512:131072,8:1024:32768,8:1024:65536,8:1024:131072,8:2048:32768,8:2048:65536,8:2048:131072}" \
    2>&1 | tee "$OUT/prefill-grid.log"
  echo "== alpha sweep"
  timeout 200 python3 bench/prefill_bench.py --out "$OUT/frontier.json" \
    --methods sdpa,flex_sparse,compact --alphas 0.001,0.01,0.06,0.3,0.7 --group-slacks 0.5,2 \
    --configs 8:1024:131072,1:1024:131072 2>&1 | tee "$OUT/frontier.log"
fi
if [ "$MODE" = tp ]; then
  # Tensor-parallel chunked prefill over ${TP:-2} GPUs (bench/tp_prefill.py);
  # NCCL's NVLink multicast stays off.
  echo "== tensor parallel (TP${TP:-2})"
  NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc-per-node=${TP:-2} bench/tp_prefill.py \
    --out "$OUT/tp-prefill.json" ${TP_ARGS:-} 2>&1 | tee "$OUT/tp-prefill.log"
fi
if [ "$MODE" = hf ]; then
  # Hugging Face transformers end to end (random LLaMA-3-style weights):
  # python/tests/test_hf.py, then bench/hf_llama.py (check + speed, < 3 min).
  echo "== transformers integration"
  python3 -m pytest -q --tb=short -p no:cacheprovider python/tests/test_hf.py 2>&1 \
    | tee "$OUT/hf-tests.log" | tail -20
  timeout 240 python3 bench/hf_llama.py --out "$OUT/hf-llama.json" ${HF_ARGS:-} 2>&1 \
    | tee "$OUT/hf-llama.log"
fi
if [ "$MODE" = fidelity ]; then
  # Attention fidelity on structured inputs (bench/structured.py): error,
  # attention-mass recall and needle retrieval against whole-prefill time.
  echo "== fidelity"
  timeout 300 python3 bench/fidelity.py --out "$OUT/fidelity.json" 2>&1 | tee "$OUT/fidelity.log"
fi
if [ "$MODE" = all ] || [ "$MODE" = bench ]; then
  echo "== benchmark"
  python3 bench/bench.py --out "$OUT/bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
fi
