//===- CpuPipeline.cpp - compact to the LLVM dialect for the host ---------===//

#include "compact/Conversion/Passes.h"
#include "compact/Pipelines/Pipelines.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;
using namespace mlir::compact;

LogicalResult mlir::compact::buildCpuPipeline(OpPassManager &pm,
                                              const CpuPipelineOptions &options) {
  ConvertCompactToLoopsOptions loops;
  loops.rowTile = options.rowTile;
  pm.addNestedPass<func::FuncOp>(createConvertCompactToLoops(loops));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createLoopInvariantCodeMotionPass());
  // The standard lowering of scf / arith / math / memref / func to LLVM.
  pm.addPass(createConvertVectorToSCFPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(arith::createArithExpandOpsPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  return success();
}

void mlir::compact::registerPipelines() {
  PassPipelineRegistration<CpuPipelineOptions>(
      "compact-cpu-pipeline",
      "compact ops to the LLVM dialect for the host (the CPU path)",
      [](OpPassManager &pm, const CpuPipelineOptions &options) {
        if (failed(buildCpuPipeline(pm, options)))
          llvm::report_fatal_error("compact-cpu-pipeline: bad pipeline text");
      });
  PassPipelineRegistration<GpuPipelineOptions>(
      "compact-gpu-pipeline", "compact ops to GPU kernels and a gpu.binary (PTX for sm_90a)",
      buildGpuPipeline);
}
