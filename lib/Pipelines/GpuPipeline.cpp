//===- GpuPipeline.cpp - compact to PTX for NVIDIA GPUs -------------------===//

#include "compact/Conversion/Passes.h"
#include "compact/Pipelines/Pipelines.h"

#include "mlir/Dialect/GPU/Pipelines/Passes.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;
using namespace mlir::compact;

void mlir::compact::buildGpuKernelPipeline(OpPassManager &pm) {
  pm.addPass(createConvertCompactToGPU());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void mlir::compact::buildGpuBinaryPipeline(OpPassManager &pm, const GpuPipelineOptions &options) {
  gpu::GPUToNVVMPipelineOptions nvvm;
  nvvm.cubinChip = options.chip;
  nvvm.cubinFeatures = options.features;
  nvvm.cubinFormat = options.format;
  nvvm.optLevel = options.optLevel;
  gpu::buildLowerToNVVMPassPipeline(pm, nvvm);
}

void mlir::compact::buildGpuPipeline(OpPassManager &pm, const GpuPipelineOptions &options) {
  buildGpuKernelPipeline(pm);
  buildGpuBinaryPipeline(pm, options);
}
