//===- Pipelines.h - named pass pipelines ------------------------*- C++ -*-===//
//
// compact-cpu-pipeline: compact ops -> scf loops -> LLVM dialect for the host
// (executed by compact-run through MLIR's ExecutionEngine).
// compact-gpu-pipeline: compact ops -> GPU kernels (gpu / nvgpu / nvvm) ->
// gpu.binary holding PTX (or a cubin) for the chip.
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

struct GpuPipelineOptions : public PassPipelineOptions<GpuPipelineOptions> {
  PassOptions::Option<std::string> chip{*this, "chip", llvm::cl::desc("target chip"),
                                        llvm::cl::init("sm_90a")};
  PassOptions::Option<std::string> features{*this, "features",
                                            llvm::cl::desc("PTX features"),
                                            llvm::cl::init("+ptx80")};
  PassOptions::Option<std::string> format{
      *this, "format", llvm::cl::desc("binary format: isa (PTX), bin (cubin), fatbin"),
      llvm::cl::init("isa")};
  PassOptions::Option<int> optLevel{*this, "opt-level", llvm::cl::desc("NVVM opt level"),
                                    llvm::cl::init(3)};
};

/// compact ops -> gpu.module of kernels + gpu.launch_func (convert-compact-to-gpu,
/// canonicalize, cse).
void buildGpuKernelPipeline(OpPassManager &pm);
/// The kernels and their launches -> NVVM -> gpu.binary; host code -> LLVM.
void buildGpuBinaryPipeline(OpPassManager &pm, const GpuPipelineOptions &options);
/// Both.
void buildGpuPipeline(OpPassManager &pm, const GpuPipelineOptions &options);

/// Registers the named pipelines with the pass registry (for compact-opt).
void registerPipelines();

} // namespace mlir::compact

#endif // COMPACT_PIPELINES_PIPELINES_H
