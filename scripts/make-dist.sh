#!/usr/bin/env bash
# Gathers what a GPU machine needs into dist/ (ignored by git): the runtime
# with its kernel library, the reference library for the tests, the kernel
# library's PTX, manifest and ptxas report.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake --build "$BUILD_DIR" --target compact_rt compact_reference
rm -rf dist && mkdir -p dist/lib dist/kernels
cp -a "$BUILD_DIR"/lib/libcompact_rt.so* "$BUILD_DIR"/lib/libcompact_reference.so dist/lib/
for f in kernels.ptx kernels.cubin manifest.json ptxas.log; do
  [ -f "$BUILD_DIR/runtime/kernels/$f" ] && cp "$BUILD_DIR/runtime/kernels/$f" dist/kernels/
done
du -sh dist
