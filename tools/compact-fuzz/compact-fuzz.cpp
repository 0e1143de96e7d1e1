//===- compact-fuzz.cpp - fuzz target over the compiler's front -----------===//
//
// One input is the text of an MLIR module. It is parsed with the compact
// dialect and the dialects its lowerings produce, verified, then taken through
// each of the project's passes on a fresh copy:
//
//   compact-fuse-selection, convert-compact-to-loops (+ canonicalize),
//   convert-compact-to-gpu (+ canonicalize)
//
// The invariants: no crash, assertion or hang, and every rejected program
// (parse error, verifier error, pass failure) comes with an error diagnostic.
// A violation aborts, which the fuzzer reports.
//
// Built with clang and -fsanitize=fuzzer (COMPACT_FUZZER=ON) this is a
// libFuzzer target; otherwise `main` below replays files and directories of
// inputs (the CI smoke run over test/Fuzz).
//
//===----------------------------------------------------------------------===//

#include "compact/Conversion/Passes.h"
#include "compact/Dialect/Compact/IR/CompactDialect.h"
#include "compact/Dialect/Compact/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Index/IR/IndexDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

using namespace mlir;

namespace {

/// Inputs larger than this are ignored: the interesting programs are small,
/// and large ones only make each run slow.
constexpr size_t kMaxInputBytes = 16 * 1024;

void violation(const char *what, llvm::StringRef input) {
  std::fprintf(stderr, "compact-fuzz: %s\n--- input ---\n%.*s\n--- end ---\n", what,
               int(input.size()), input.data());
  std::abort();
}

DialectRegistry &registry() {
  static DialectRegistry r = [] {
    DialectRegistry reg;
    reg.insert<compact::CompactDialect, func::FuncDialect, arith::ArithDialect,
               memref::MemRefDialect, scf::SCFDialect, vector::VectorDialect,
               math::MathDialect, index::IndexDialect, gpu::GPUDialect,
               nvgpu::NVGPUDialect, NVVM::NVVMDialect, LLVM::LLVMDialect>();
    return reg;
  }();
  return r;
}

/// Runs `build`'s passes on a copy of `module`; a failure must have said why.
void runPasses(MLIRContext &context, ModuleOp module, const int &errors, llvm::StringRef input,
               const char *name, const std::function<void(PassManager &)> &build) {
  OwningOpRef<ModuleOp> copy(cast<ModuleOp>(module->clone()));
  PassManager pm(&context);
  build(pm);
  int before = errors;
  if (failed(pm.run(*copy)) && errors == before)
    violation((std::string(name) + " failed without an error diagnostic").c_str(), input);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > kMaxInputBytes)
    return 0;
  // The parser's lexer needs a NUL after the text; the fuzzer's bytes have none.
  const std::string text(reinterpret_cast<const char *>(data), size);
  llvm::StringRef input(text);
  // A fresh context per input: nothing a previous input interned or loaded
  // changes this one.
  MLIRContext context(registry(), MLIRContext::Threading::DISABLED);
  context.allowUnregisteredDialects(false);
  int errors = 0;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    if (diag.getSeverity() == DiagnosticSeverity::Error)
      ++errors;
    return success(); // handled: keep the fuzzer's output quiet
  });

  // The parser verifies what it parsed (the ops' verifiers included).
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(input, &context);
  if (!module) {
    if (errors == 0)
      violation("rejected by the parser or a verifier without an error diagnostic", input);
    return 0;
  }
  runPasses(context, *module, errors, input, "compact-fuse-selection", [](PassManager &pm) {
    pm.addPass(compact::createCompactFuseSelection());
  });
  runPasses(context, *module, errors, input, "convert-compact-to-loops", [](PassManager &pm) {
    pm.addPass(compact::createConvertCompactToLoops());
    pm.addPass(createCanonicalizerPass());
  });
  runPasses(context, *module, errors, input, "convert-compact-to-gpu", [](PassManager &pm) {
    pm.addPass(compact::createConvertCompactToGPU());
    pm.addPass(createCanonicalizerPass());
  });
  return 0;
}

#ifndef COMPACT_LIBFUZZER
/// Replays inputs: each argument is a file or a directory of files.
int main(int argc, char **argv) {
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::error_code ec;
    if (llvm::sys::fs::is_directory(argv[i])) {
      for (llvm::sys::fs::recursive_directory_iterator it(argv[i], ec), end; it != end && !ec;
           it.increment(ec))
        if (llvm::sys::fs::is_regular_file(it->path()))
          files.push_back(it->path());
    } else {
      files.push_back(argv[i]);
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: compact-fuzz <input file or directory>...\n");
    return 2;
  }
  std::sort(files.begin(), files.end());
  for (const std::string &path : files) {
    auto buffer = llvm::MemoryBuffer::getFile(path);
    if (!buffer) {
      std::fprintf(stderr, "compact-fuzz: cannot read %s\n", path.c_str());
      return 1;
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t *>((*buffer)->getBufferStart()),
                           (*buffer)->getBufferSize());
  }
  std::printf("compact-fuzz: %zu inputs, no violation\n", files.size());
  return 0;
}
#endif
