//===- compact-opt.cpp - the compact optimizer driver ---------------------===//
//
// mlir-opt with the compact dialect and the project's passes and pipelines.
//
//===----------------------------------------------------------------------===//

#include "compact/Dialect/Compact/IR/CompactDialect.h"
#include "compact/Conversion/Passes.h"
#include "compact/Dialect/Compact/Transforms/Passes.h"
#include "compact/Pipelines/Pipelines.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  mlir::compact::registerCompactTransformsPasses();
  mlir::compact::registerCompactConversionPasses();
  mlir::compact::registerPipelines();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  // gpu-module-to-binary translates kernels to LLVM IR.
  mlir::registerAllToLLVMIRTranslations(registry);
  registry.insert<mlir::compact::CompactDialect>();

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "CompactAttention optimizer driver\n", registry));
}
