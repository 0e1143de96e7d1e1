//===- Passes.h - compact dialect transformations ---------------*- C++ -*-===//

#ifndef COMPACT_DIALECT_COMPACT_TRANSFORMS_PASSES_H
#define COMPACT_DIALECT_COMPACT_TRANSFORMS_PASSES_H

#include "compact/Dialect/Compact/IR/CompactOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Pass/Pass.h"

namespace mlir::compact {

#define GEN_PASS_DECL
#include "compact/Dialect/Compact/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "compact/Dialect/Compact/Transforms/Passes.h.inc"

} // namespace mlir::compact

#endif // COMPACT_DIALECT_COMPACT_TRANSFORMS_PASSES_H
