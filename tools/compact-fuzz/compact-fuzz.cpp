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
// An input whose first byte is 0xC0 is not text: its bytes choose one compact
// op, its operand types and its attributes from lists that favour the edges
// (see StructuredProgram), so that mutations explore the verifiers and the
// lowerings rather than the parser.
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

/// Reads the bytes of a structured input; past the end it reads zeros.
class ByteReader {
public:
  ByteReader(const uint8_t *data, size_t size) : p(data), end(data + size) {}
  uint8_t next() { return p < end ? *p++ : 0; }
  template <typename T, size_t N>
  const T &pick(const T (&options)[N]) {
    return options[next() % N];
  }
  bool chance(unsigned inEight) { return next() % 8 < inEight; }

private:
  const uint8_t *p, *end;
};

/// One compact op in a function, written as text from a structured input.
class StructuredProgram {
public:
  explicit StructuredProgram(ByteReader &r) : r(r) {}

  std::string build() {
    static const char *const ops[] = {"append_kv",   "pool_keys",   "block_scores",
                                      "select_blocks", "block_union", "select_union",
                                      "score_select_union", "dense_table",
                                      "paged_attention"};
    std::string op = r.pick(ops);
    std::string data = r.pick(kData);
    if (op == "append_kv") {
      ins({mem(4, data), mem(4, data), mem(2, "i32"), mem(1, "i32")});
      outs({mem(4, data), mem(4, data)});
      attr("layout", layout());
    } else if (op == "pool_keys") {
      ins({mem(4, data), mem(2, "i32"), mem(1, "i32")}, /*chunkLen=*/true);
      outs({mem(4, r.pick(kData))});
      attr("block_size", blockSize());
      attr("layout", layout());
    } else if (op == "block_scores") {
      ins({mem(4, data), mem(4, r.pick(kData)), mem(1, "i32")});
      outs({mem(4, "f32")});
      attr("block_size", blockSize());
      scale();
    } else if (op == "select_blocks") {
      ins({mem(4, "f32"), mem(1, "i32")}, /*chunkLen=*/true);
      outs({mem(4, "i8")});
      attr("block_size", blockSize());
      selection();
    } else if (op == "block_union" || op == "select_union") {
      ins({mem(4, op == "block_union" ? "i8" : "f32"), mem(1, "i32")}, /*chunkLen=*/true);
      outs({mem(3, "i32"), mem(2, "i32")});
      attr("block_size", blockSize());
      attr("kv_heads", r.pick(kHeads));
      attr("exec_group_size", r.pick(kHeads));
      if (op == "select_union")
        selection();
    } else if (op == "score_select_union") {
      ins({mem(4, data), mem(4, r.pick(kData)), mem(1, "i32")});
      outs({mem(3, "i32"), mem(2, "i32")});
      attr("block_size", blockSize());
      attr("exec_group_size", r.pick(kHeads));
      selection();
      scale();
    } else if (op == "dense_table") {
      ins({mem(1, "i32")});
      outs({mem(3, "i32"), mem(2, "i32")});
      attr("block_size", blockSize());
    } else {
      ins({mem(4, data), mem(4, data), mem(4, data), mem(2, "i32"), mem(1, "i32"),
           mem(3, "i32"), mem(2, "i32")});
      outs({mem(4, data)});
      if (r.chance(4))
        outs({mem(3, "f32")});
      attr("block_size", blockSize());
      if (r.chance(4))
        attr("layout", layout());
      if (r.chance(3))
        attr("exec_group_size", r.pick(kHeads));
      if (r.chance(2))
        attr("compact.matrix_path", r.pick(kPaths));
      scale();
    }
    std::string args;
    for (size_t i = 0; i < operands.size(); ++i)
      args += (i ? ", " : "") + ("%a" + std::to_string(i)) + ": " + operands[i];
    if (chunkLen)
      args += ", %c: index";
    std::string text = "func.func @f(" + args + ") {\n  compact." + op + " ";
    auto list = [&](size_t from, size_t to, bool names) {
      std::string out;
      for (size_t i = from; i < to; ++i)
        out += (i > from ? ", " : "") + (names ? "%a" + std::to_string(i) : operands[i]);
      return out;
    };
    text += list(0, numIns, true) + (chunkLen ? ", %c" : "") + " into " +
            list(numIns, operands.size(), true) + " {" + attrs + "}\n      : " +
            list(0, numIns, false) + " into " + list(numIns, operands.size(), false) +
            "\n  return\n}\n";
    return text;
  }

private:
  static constexpr const char *kData[] = {"bf16", "f16", "f32", "bf16", "f64", "i8", "i32"};
  static constexpr const char *kHeads[] = {"1", "2", "4", "3", "8", "16", "7", "0"};
  static constexpr const char *kPaths[] = {"\"wgmma\"", "\"mma_sync\"", "\"tma\""};

  /// A memref of (usually) `rank` dims of (usually) `element`; dims static
  /// from a list of edges, or dynamic.
  std::string mem(int rank, const std::string &element) {
    static const char *const dims[] = {"?", "?", "?", "1",  "2",   "4",   "16",  "64",
                                       "128", "4", "8", "3", "100", "129", "256", "0",
                                       "32", "28", "1000", "7"};
    static const char *const elements[] = {"bf16", "f16", "f32", "i8", "i32", "i64", "index"};
    if (r.chance(1))
      rank = 1 + r.next() % 5;
    std::string type = "memref<";
    for (int i = 0; i < rank; ++i)
      type += std::string(r.pick(dims)) + "x";
    return type + (r.chance(1) ? r.pick(elements) : element.c_str()) + ">";
  }
  void ins(std::initializer_list<std::string> types, bool withChunkLen = false) {
    operands.insert(operands.end(), types);
    numIns = operands.size();
    chunkLen = withChunkLen;
  }
  void outs(std::initializer_list<std::string> types) {
    operands.insert(operands.end(), types);
  }
  void attr(const std::string &name, const std::string &value) {
    attrs += (attrs.empty() ? "" : ", ") + name + " = " + value;
  }
  std::string blockSize() {
    static const char *const sizes[] = {"128", "64", "256", "1", "100", "4096", "2147483648",
                                        "1099511627776", "128", "-128"};
    return r.pick(sizes);
  }
  std::string layout() {
    return r.chance(4) ? "#compact.layout<nhd>" : "#compact.layout<hnd>";
  }
  void scale() {
    static const char *const scales[] = {"0.125 : f32", "0.0 : f32", "-1.0 : f32",
                                         "0x7F800000 : f32", "1.0e30 : f32"};
    if (r.chance(3))
      attr("scale", r.pick(scales));
  }
  void selection() {
    static const char *const modes[] = {"#compact.threshold<rowmax_log>",
                                        "#compact.threshold<rowmax>",
                                        "#compact.threshold<absolute>"};
    static const char *const thresholds[] = {"0.06 : f32", "1.0 : f32", "0.0 : f32",
                                             "-1.0 : f32", "2.5 : f32", "0x7FC00000 : f32",
                                             "0x7F800000 : f32"};
    static const char *const counts[] = {"0", "2", "4", "-1", "1000000000000"};
    attr("mode", r.pick(modes));
    attr("threshold", r.pick(thresholds));
    if (r.chance(5))
      attr("sink", r.pick(counts));
    if (r.chance(5))
      attr("window", r.pick(counts));
  }

  ByteReader &r;
  std::vector<std::string> operands; // their types, inputs first
  size_t numIns = 0;
  bool chunkLen = false;
  std::string attrs;
};

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
  std::string text;
  if (size > 0 && data[0] == 0xC0) {
    ByteReader reader(data + 1, size - 1);
    text = StructuredProgram(reader).build();
  } else {
    text.assign(reinterpret_cast<const char *>(data), size);
  }
  llvm::StringRef input(text);
  // COMPACT_FUZZ_PRINT=1 shows each program first (to read a finding).
  static const bool print = std::getenv("COMPACT_FUZZ_PRINT") != nullptr;
  if (print)
    std::fprintf(stderr, "--- program ---\n%s\n", text.c_str());
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
