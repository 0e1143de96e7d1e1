//===- Passes.h - conversions out of the compact dialect --------*- C++ -*-===//

#ifndef COMPACT_CONVERSION_PASSES_H
#define COMPACT_CONVERSION_PASSES_H

#include "compact/Dialect/Compact/IR/CompactOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::compact {

#define GEN_PASS_DECL
#include "compact/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "compact/Conversion/Passes.h.inc"

} // namespace mlir::compact

#endif // COMPACT_CONVERSION_PASSES_H
