//===- CpuProgram.cpp - compile and run compact programs on the host ------===//

#include "compact/CpuRunner/CpuProgram.h"

#include "compact/Dialect/Compact/IR/CompactDialect.h"
#include "compact/Dialect/Compact/Transforms/Passes.h"
#include "compact/Pipelines/Pipelines.h"
#include "compact/Reference/Workload.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/TargetSelect.h"

#include <cstring>
#include <deque>

using namespace compact;
using namespace compact::cpu;

//===----------------------------------------------------------------------===//
// Program text
//===----------------------------------------------------------------------===//

namespace {

std::string hexFloat(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  return llvm::formatv("0x{0:X-8}", bits).str();
}

const char *modeName(ref::ThresholdMode mode) {
  switch (mode) {
  case ref::ThresholdMode::RowMaxLog:
    return "rowmax_log";
  case ref::ThresholdMode::RowMax:
    return "rowmax";
  case ref::ThresholdMode::Absolute:
    return "absolute";
  }
  return "rowmax_log";
}

/// Replaces each `{key}` of `text` by its value.
std::string substitute(std::string text,
                       std::initializer_list<std::pair<const char *, std::string>> values) {
  for (const auto &[key, value] : values) {
    std::string pattern = std::string("{") + key + "}";
    for (size_t at = text.find(pattern); at != std::string::npos;
         at = text.find(pattern, at + value.size()))
      text.replace(at, pattern.size(), value);
  }
  return text;
}

} // namespace

std::string compact::cpu::buildChunkProgram(const ProgramConfig &c) {
  const char *t = c.dtype == DataType::F32 ? "f32" : "bf16";
  bool nhd = c.layout == ref::KVLayout::NHD;
  std::string q = llvm::formatv("memref<?x?x{0}x{1}x{2}>", c.qHeads, c.headDim, t);
  std::string kvNew = llvm::formatv("memref<?x?x{0}x{1}x{2}>", c.kvHeads, c.headDim, t);
  std::string cache =
      nhd ? llvm::formatv("memref<?x{0}x{1}x{2}x{3}>", c.pageSize, c.kvHeads, c.headDim, t).str()
          : llvm::formatv("memref<?x{0}x{1}x{2}x{3}>", c.kvHeads, c.pageSize, c.headDim, t).str();
  std::string pooled = llvm::formatv("memref<?x{0}x?x{1}xf32>", c.kvHeads, c.headDim);
  std::string scores = llvm::formatv("memref<?x{0}x?x?xf32>", c.qHeads);
  std::string mask = llvm::formatv("memref<?x{0}x?x?xi8>", c.qHeads);
  // E = Hq / s table rows, or E * Qb (one table per query block).
  std::string table = "memref<?x?x?xi32>";
  std::string counts = "memref<?x?xi32>";
  std::string lse = llvm::formatv("memref<?x{0}x?xf32>", c.qHeads);
  std::string layout = nhd ? "#compact.layout<nhd>" : "#compact.layout<hnd>";
  std::string selection = llvm::formatv(
      "mode = #compact.threshold<{0}>, threshold = {1} : f32, sink = {2}, window = {3}",
      modeName(c.selection.mode), hexFloat(c.selection.threshold), c.selection.sink,
      c.selection.window);
  std::string unionAttrs = llvm::formatv("block_size = {0}, kv_heads = {1}, exec_group_size = {2}",
                                         c.blockSize, c.kvHeads, c.execGroupSize);

  static const char *const kProgram = R"mlir(
func.func @append_and_pool(%k: {kvNew}, %v: {kvNew}, %kc: {cache}, %vc: {cache},
                           %pt: memref<?x?xi32>, %lens: memref<?xi32>, %pooled: {pooled})
    attributes {llvm.emit_c_interface} {
  %c1 = arith.constant 1 : index
  %c = memref.dim %k, %c1 : {kvNew}
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc {layout = {layout}}
      : {kvNew}, {kvNew}, memref<?x?xi32>, memref<?xi32> into {cache}, {cache}
  compact.pool_keys %kc, %pt, %lens, %c into %pooled {block_size = {bs}, layout = {layout}}
      : {cache}, memref<?x?xi32>, memref<?xi32> into {pooled}
  return
}

func.func @select(%q: {q}, %pooled: {pooled}, %lens: memref<?xi32>, %scores: {scores},
                  %mask: {mask}, %table: {table}, %counts: {counts})
    attributes {llvm.emit_c_interface} {
  %c1 = arith.constant 1 : index
  %c = memref.dim %q, %c1 : {q}
  compact.block_scores %q, %pooled, %lens into %scores {block_size = {bs}}
      : {q}, {pooled}, memref<?xi32> into {scores}
  compact.select_blocks %scores, %lens, %c into %mask {block_size = {bs}, {selection}}
      : {scores}, memref<?xi32> into {mask}
  compact.block_union %mask, %lens, %c into %table, %counts {{unionAttrs}}
      : {mask}, memref<?xi32> into {table}, {counts}
  return
}

func.func @select_fused(%q: {q}, %pooled: {pooled}, %lens: memref<?xi32>,
                        %table: {table}, %counts: {counts})
    attributes {llvm.emit_c_interface} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %cbs = arith.constant {bs} : index
  %b = memref.dim %q, %c0 : {q}
  %c = memref.dim %q, %c1 : {q}
  %kb = memref.dim %table, %c2 : {table}
  %qb = arith.ceildivui %c, %cbs : index
  %scores = memref.alloc(%b, %qb, %kb) : {scores}
  %mask = memref.alloc(%b, %qb, %kb) : {mask}
  compact.block_scores %q, %pooled, %lens into %scores {block_size = {bs}}
      : {q}, {pooled}, memref<?xi32> into {scores}
  compact.select_blocks %scores, %lens, %c into %mask {block_size = {bs}, {selection}}
      : {scores}, memref<?xi32> into {mask}
  compact.block_union %mask, %lens, %c into %table, %counts {{unionAttrs}}
      : {mask}, memref<?xi32> into {table}, {counts}
  memref.dealloc %mask : {mask}
  memref.dealloc %scores : {scores}
  return
}

func.func @select_external(%scores: {scores}, %lens: memref<?xi32>, %c: index,
                           %table: {table}, %counts: {counts})
    attributes {llvm.emit_c_interface} {
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %b = memref.dim %scores, %c0 : {scores}
  %qb = memref.dim %scores, %c2 : {scores}
  %kb = memref.dim %scores, %c3 : {scores}
  %mask = memref.alloc(%b, %qb, %kb) : {mask}
  compact.select_blocks %scores, %lens, %c into %mask {block_size = {bs}, {selection}}
      : {scores}, memref<?xi32> into {mask}
  compact.block_union %mask, %lens, %c into %table, %counts {{unionAttrs}}
      : {mask}, memref<?xi32> into {table}, {counts}
  memref.dealloc %mask : {mask}
  return
}

func.func @union_of_mask(%mask: {mask}, %lens: memref<?xi32>, %c: index,
                         %table: {table}, %counts: {counts})
    attributes {llvm.emit_c_interface} {
  compact.block_union %mask, %lens, %c into %table, %counts {{unionAttrs}}
      : {mask}, memref<?xi32> into {table}, {counts}
  return
}

func.func @choose_exec_groups(%table: {table}, %counts: {counts})
    attributes {llvm.emit_c_interface} {
  compact.choose_exec_groups %table, %counts
      {q_heads = {hq}, kv_heads = {hkv}, slack = {slack} : f32}
      : {table}, {counts}
  return
}

func.func @attention(%q: {q}, %kc: {cache}, %vc: {cache}, %pt: memref<?x?xi32>,
                     %lens: memref<?xi32>, %table: {table}, %counts: {counts},
                     %out: {q}, %lse: {lse})
    attributes {llvm.emit_c_interface} {
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out, %lse
      {block_size = {bs}, layout = {layout}, exec_group_size = {s}}
      : {q}, {cache}, {cache}, memref<?x?xi32>, memref<?xi32>, {table}, {counts}
        into {q}, {lse}
  return
}
)mlir";
  return substitute(kProgram, {{"q", q},
                               {"kvNew", kvNew},
                               {"cache", cache},
                               {"pooled", pooled},
                               {"scores", scores},
                               {"mask", mask},
                               {"table", table},
                               {"counts", counts},
                               {"lse", lse},
                               {"layout", layout},
                               {"selection", selection},
                               {"unionAttrs", unionAttrs},
                               {"bs", std::to_string(c.blockSize)},
                               {"s", std::to_string(c.execGroupSize)},
                               {"hq", std::to_string(c.qHeads)},
                               {"hkv", std::to_string(c.kvHeads)},
                               {"slack", hexFloat(c.groupSlack)}});
}

//===----------------------------------------------------------------------===//
// Compilation
//===----------------------------------------------------------------------===//

llvm::Expected<std::unique_ptr<CpuProgram>>
CpuProgram::compile(const ProgramConfig &config) {
  static const bool nativeTargetReady = [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    return true;
  }();
  (void)nativeTargetReady;

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  registry.insert<mlir::compact::CompactDialect>();
  mlir::registerBuiltinDialectTranslation(registry);
  mlir::registerLLVMDialectTranslation(registry);
  mlir::MLIRContext context(registry);

  std::string text = buildChunkProgram(config);
  std::string diagnostics;
  llvm::raw_string_ostream diagStream(diagnostics);
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &diag) {
    diagStream << diag.getLocation() << ": " << diag << "\n";
    return mlir::success();
  });
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceString<mlir::ModuleOp>(text, &context);
  if (!module)
    return llvm::createStringError("cannot parse the chunk program:\n" + diagnostics);

  mlir::PassManager pm(&context);
  pm.addNestedPass<mlir::func::FuncOp>(mlir::compact::createCompactFuseSelection());
  mlir::compact::CpuPipelineOptions options;
  options.rowTile = config.rowTile;
  if (failed(mlir::compact::buildCpuPipeline(pm, options)) || failed(pm.run(*module)))
    return llvm::createStringError("the CPU pipeline failed:\n" + diagnostics);

  mlir::ExecutionEngineOptions engineOptions;
  auto transformer = mlir::makeOptimizingTransformer(/*optLevel=*/3, /*sizeLevel=*/0,
                                                     /*targetMachine=*/nullptr);
  engineOptions.transformer = transformer;
  engineOptions.jitCodeGenOptLevel = llvm::CodeGenOptLevel::Aggressive;
  auto engine = mlir::ExecutionEngine::create(*module, engineOptions);
  if (!engine)
    return engine.takeError();
  return std::unique_ptr<CpuProgram>(new CpuProgram(config, std::move(*engine)));
}

CpuProgram::CpuProgram(const ProgramConfig &config,
                       std::unique_ptr<mlir::ExecutionEngine> engine)
    : cfg(config), engine(std::move(engine)) {}

CpuProgram::~CpuProgram() = default;

//===----------------------------------------------------------------------===//
// Calls
//===----------------------------------------------------------------------===//

namespace {

/// Arguments of a `_mlir_ciface_` function: memrefs are passed as pointers
/// to ranked descriptors {allocated, aligned, offset, sizes[N], strides[N]}.
class PackedArgs {
public:
  template <typename T>
  void memref(const T *data, const std::vector<int64_t> &shape) {
    std::vector<int64_t> &desc = descriptors.emplace_back(3 + 2 * shape.size());
    auto address = reinterpret_cast<int64_t>(data);
    desc[0] = desc[1] = address;
    desc[2] = 0;
    int64_t stride = 1;
    for (size_t i = shape.size(); i-- > 0;) {
      desc[3 + i] = shape[i];
      desc[3 + shape.size() + i] = stride;
      stride *= shape[i];
    }
    pointers.push_back(desc.data());
    args.push_back(&pointers.back());
  }
  template <typename T>
  void memref(const Tensor<T> &t) {
    memref(t.data.data(), t.shape);
  }
  void index(int64_t value) {
    scalars.push_back(value);
    args.push_back(&scalars.back());
  }
  llvm::SmallVector<void *> args;

private:
  std::deque<std::vector<int64_t>> descriptors;
  std::deque<void *> pointers;
  std::deque<int64_t> scalars;
};

/// A float tensor as the program's data type sees it: passed through for F32,
/// a bf16 copy for BF16 (written back for outputs when the call returns).
class DataArg {
public:
  DataArg(DataType type, const Tensor<float> &t, Tensor<float> *writeBack = nullptr)
      : tensor(t), writeBack(writeBack), bf16(type == DataType::BF16) {
    if (!bf16)
      return;
    bits.resize(t.size());
    for (size_t i = 0; i < t.size(); ++i) {
      float r = ref::roundToBF16(t.data[i]);
      uint32_t u;
      std::memcpy(&u, &r, 4);
      bits[i] = uint16_t(u >> 16);
    }
  }
  ~DataArg() {
    if (!bf16 || !writeBack)
      return;
    for (size_t i = 0; i < bits.size(); ++i) {
      uint32_t u = uint32_t(bits[i]) << 16;
      std::memcpy(&writeBack->data[i], &u, 4);
    }
  }
  void pack(PackedArgs &args) const {
    if (bf16)
      args.memref(bits.data(), tensor.shape);
    else
      args.memref(tensor);
  }

private:
  const Tensor<float> &tensor;
  Tensor<float> *writeBack;
  bool bf16;
  std::vector<uint16_t> bits;
};

llvm::Error invoke(mlir::ExecutionEngine &engine, llvm::StringRef name, PackedArgs &args) {
  return engine.invokePacked(("_mlir_ciface_" + name).str(), args.args);
}

} // namespace

llvm::Error CpuProgram::appendAndPool(const Tensor<float> &kNew, const Tensor<float> &vNew,
                                      Tensor<float> &kCache, Tensor<float> &vCache,
                                      const Tensor<int32_t> &pageTable,
                                      const Tensor<int32_t> &ctxLens, Tensor<float> &pooled) {
  PackedArgs args;
  DataArg k(cfg.dtype, kNew), v(cfg.dtype, vNew), kc(cfg.dtype, kCache, &kCache),
      vc(cfg.dtype, vCache, &vCache);
  k.pack(args);
  v.pack(args);
  kc.pack(args);
  vc.pack(args);
  args.memref(pageTable);
  args.memref(ctxLens);
  args.memref(pooled);
  return invoke(*engine, "append_and_pool", args);
}

llvm::Error CpuProgram::select(const Tensor<float> &q, const Tensor<float> &pooled,
                               const Tensor<int32_t> &ctxLens, Tensor<float> &scores,
                               Tensor<int8_t> &mask, Tensor<int32_t> &table,
                               Tensor<int32_t> &counts) {
  PackedArgs args;
  DataArg qa(cfg.dtype, q);
  qa.pack(args);
  args.memref(pooled);
  args.memref(ctxLens);
  args.memref(scores);
  args.memref(mask);
  args.memref(table);
  args.memref(counts);
  return invoke(*engine, "select", args);
}

llvm::Error CpuProgram::selectFused(const Tensor<float> &q, const Tensor<float> &pooled,
                                    const Tensor<int32_t> &ctxLens, Tensor<int32_t> &table,
                                    Tensor<int32_t> &counts) {
  PackedArgs args;
  DataArg qa(cfg.dtype, q);
  qa.pack(args);
  args.memref(pooled);
  args.memref(ctxLens);
  args.memref(table);
  args.memref(counts);
  return invoke(*engine, "select_fused", args);
}

llvm::Error CpuProgram::selectExternal(const Tensor<float> &scores,
                                       const Tensor<int32_t> &ctxLens, int64_t chunkLen,
                                       Tensor<int32_t> &table, Tensor<int32_t> &counts) {
  PackedArgs args;
  args.memref(scores);
  args.memref(ctxLens);
  args.index(chunkLen);
  args.memref(table);
  args.memref(counts);
  return invoke(*engine, "select_external", args);
}

llvm::Error CpuProgram::unionOfMask(const Tensor<int8_t> &mask, const Tensor<int32_t> &ctxLens,
                                    int64_t chunkLen, Tensor<int32_t> &table,
                                    Tensor<int32_t> &counts) {
  PackedArgs args;
  args.memref(mask);
  args.memref(ctxLens);
  args.index(chunkLen);
  args.memref(table);
  args.memref(counts);
  return invoke(*engine, "union_of_mask", args);
}

llvm::Error CpuProgram::chooseExecGroups(Tensor<int32_t> &table, Tensor<int32_t> &counts) {
  PackedArgs args;
  args.memref(table);
  args.memref(counts);
  return invoke(*engine, "choose_exec_groups", args);
}

llvm::Error CpuProgram::attention(const Tensor<float> &q, const Tensor<float> &kCache,
                                  const Tensor<float> &vCache, const Tensor<int32_t> &pageTable,
                                  const Tensor<int32_t> &ctxLens, const Tensor<int32_t> &table,
                                  const Tensor<int32_t> &counts, Tensor<float> &out,
                                  Tensor<float> &lse) {
  PackedArgs args;
  DataArg qa(cfg.dtype, q), kc(cfg.dtype, kCache), vc(cfg.dtype, vCache),
      o(cfg.dtype, out, &out);
  qa.pack(args);
  kc.pack(args);
  vc.pack(args);
  args.memref(pageTable);
  args.memref(ctxLens);
  args.memref(table);
  args.memref(counts);
  o.pack(args);
  args.memref(lse);
  return invoke(*engine, "attention", args);
}
