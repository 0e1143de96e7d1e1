#!/usr/bin/env bash
# CompactAttention quick start.
#
#   scripts/quickstart.sh         install what is missing, build, compile the default
#                                 kernels, run the chunked-prefill example (on the GPU
#                                 if there is one, else on the CPU reference path)
#   scripts/quickstart.sh test    install what is missing, build, run every test
#
# Environment: BUILD_DIR (default build), JOBS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
JOBS=${JOBS:-$(nproc)}
PACKAGES="cmake ninja-build g++ libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools libgtest-dev python3"

install_missing() {
  local missing=()
  for p in $PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

configure_and_build() {
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    cmake -G Ninja -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
      -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir
  fi
  cmake --build "$BUILD_DIR" -j "$JOBS"
}

have_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

install_missing
configure_and_build

if [ "${1:-}" = "test" ]; then
  echo "== running every test"
  cd "$BUILD_DIR"
  ctest --output-on-failure -j "$JOBS"
  exit 0
fi

echo "== main job: chunked prefill of the planted-retrieval workload"
if have_gpu && python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "   (GPU: the kernels compact-codegen generated, run through the runtime)"
  COMPACT_RT_LIBRARY="$BUILD_DIR/lib/libcompact_rt.so" python3 examples/chunked_prefill.py
else
  echo "   (no GPU here: the CPU path, compact -> scf/vector -> LLVM, JIT-compiled)"
  "$BUILD_DIR/bin/compact-run"
fi
