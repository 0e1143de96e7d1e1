//===- Pipelines.h - named pass pipelines ------------------------*- C++ -*-===//
//
// compact-cpu-pipeline: compact ops -> scf loops -> LLVM dialect for the host
// (executed by compact-run through MLIR's ExecutionEngine).
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_PIPELINES_PIPELINES_H
#define COMPACT_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"

namespace mlir::compact {

struct CpuPipelineOptions : public PassPipelineOptions<CpuPipelineOptions> {
  PassOptions::Option<int64_t> rowTile{
      *this, "row-tile", llvm::cl::desc("query rows per attention tile"),
      llvm::cl::init(16)};
};

/// Adds the passes that take a module of compact ops (on memrefs, in
/// func.func) to the LLVM dialect for the host. Functions that should be
/// callable through the C interface carry `llvm.emit_c_interface`.
LogicalResult buildCpuPipeline(OpPassManager &pm, const CpuPipelineOptions &options);

/// Registers the named pipelines with the pass registry (for compact-opt).
void registerPipelines();

} // namespace mlir::compact

#endif // COMPACT_PIPELINES_PIPELINES_H
