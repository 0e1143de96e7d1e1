//===- KernelLibrary.cpp - compile a kernel library to PTX ----------------===//

#include "compact/Codegen/KernelLibrary.h"

#include "compact/Dialect/Compact/IR/CompactDialect.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

#include <map>

using namespace compact::codegen;
using llvm::formatv;

std::string LibraryConfig::key() const {
  return formatv("q{0}_kv{1}_d{2}_p{3}_b{4}_{5}_{6}", qHeads, kvHeads, headDim, pageSize,
                 blockSize, dtype, layout)
      .str();
}

std::vector<LibraryConfig> compact::codegen::defaultLibrary() {
  std::vector<LibraryConfig> configs;
  // The standard workload: LLaMA-3.1-8B attention at TP2, every s dividing G.
  configs.push_back({16, 4, 128, 64, 128, "bf16", "nhd", {1, 2, 4}});
  // The same layer on one GPU (TP1): the tensor-parallel check's reference.
  configs.push_back({32, 8, 128, 64, 128, "bf16", "nhd", {1, 4}});
  // Larger pages, head-major layout.
  configs.push_back({16, 4, 128, 128, 128, "bf16", "hnd", {4}});
  // fp16, head dim 64, 32 / 8 heads.
  configs.push_back({32, 8, 64, 64, 128, "f16", "nhd", {2, 4}});
  // A group size that is not a power of two (28 / 4: G = 7).
  configs.push_back({28, 4, 128, 64, 128, "bf16", "nhd", {1, 7}});
  // Selection blocks of one 64-token page.
  configs.push_back({16, 4, 128, 64, 64, "bf16", "nhd", {4}});
  return configs;
}

llvm::Expected<LibraryConfig> compact::codegen::parseConfig(llvm::StringRef text) {
  LibraryConfig c;
  auto [key, groups] = text.split(':');
  llvm::SmallVector<llvm::StringRef> parts;
  key.split(parts, '_');
  auto fail = [&]() {
    return llvm::createStringError(
        "bad kernel configuration '" + text.str() +
        "': expected q<Hq>_kv<Hkv>_d<D>_p<page>_b<block>_<bf16|f16>_<nhd|hnd>[:s1,2,...]");
  };
  if (parts.size() != 7)
    return fail();
  auto number = [](llvm::StringRef s, llvm::StringRef prefix, int64_t &out) {
    return s.consume_front(prefix) && !s.getAsInteger(10, out) && out > 0;
  };
  if (!number(parts[0], "q", c.qHeads) || !number(parts[1], "kv", c.kvHeads) ||
      !number(parts[2], "d", c.headDim) || !number(parts[3], "p", c.pageSize) ||
      !number(parts[4], "b", c.blockSize))
    return fail();
  c.dtype = parts[5].str();
  c.layout = parts[6].str();
  if ((c.dtype != "bf16" && c.dtype != "f16") || (c.layout != "nhd" && c.layout != "hnd"))
    return fail();
  if (c.qHeads % c.kvHeads != 0)
    return llvm::createStringError("kernel configuration '" + text.str() +
                                   "': query heads must be a multiple of kv heads");
  if (!groups.empty()) {
    c.execGroupSizes.clear();
    llvm::SmallVector<llvm::StringRef> values;
    groups.split(values, ',');
    for (llvm::StringRef v : values) {
      v.consume_front("s"); // "s1,s4" and "s1,4" both name s = 1 and 4
      int64_t s;
      if (v.getAsInteger(10, s) || s <= 0 || (c.qHeads / c.kvHeads) % s != 0)
        return llvm::createStringError("kernel configuration '" + text.str() +
                                       "': execution group sizes (s<n>) must divide Hq / Hkv (" +
                                       std::to_string(c.qHeads / c.kvHeads) + "), got '" +
                                       v.str() + "'");
      c.execGroupSizes.push_back(s);
    }
  } else {
    c.execGroupSizes = {c.qHeads / c.kvHeads};
  }
  return c;
}

namespace {

/// Replaces each `{key}` of `text`.
std::string fill(std::string text, const std::map<std::string, std::string> &values) {
  for (const auto &[key, value] : values) {
    std::string pattern = "{" + key + "}";
    for (size_t at = text.find(pattern); at != std::string::npos;
         at = text.find(pattern, at + value.size()))
      text.replace(at, pattern.size(), value);
  }
  return text;
}

const char *const kSharedOps = R"mlir(
func.func @{f}__append_kv(%k: {kvnew}, %v: {kvnew}, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
                          %kc: {cache}, %vc: {cache}) {
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc {layout = {layout}}
      : {kvnew}, {kvnew}, memref<?x?xi32>, memref<?xi32> into {cache}, {cache}
  return
}
func.func @{f}__pool_keys(%kc: {cache}, %pt: memref<?x?xi32>, %lens: memref<?xi32>, %c: index,
                          %pooled: {pooled}) {
  compact.pool_keys %kc, %pt, %lens, %c into %pooled {block_size = {bs}, layout = {layout}}
      : {cache}, memref<?x?xi32>, memref<?xi32> into {pooled}
  return
}
func.func @{f}__block_scores(%q: {q}, %pooled: {pooled}, %lens: memref<?xi32>, %scores: {scores}) {
  compact.block_scores %q, %pooled, %lens into %scores {block_size = {bs}}
      : {q}, {pooled}, memref<?xi32> into {scores}
  return
}
func.func @{f}__select_blocks(%scores: {scores}, %lens: memref<?xi32>, %c: index, %mask: {mask}) {
  compact.select_blocks %scores, %lens, %c into %mask {block_size = {bs}, {selection}}
      : {scores}, memref<?xi32> into {mask}
  return
}
func.func @{f}__choose_exec_groups(%table: memref<?x?x?xi32>, %counts: memref<?x?xi32>) {
  compact.choose_exec_groups %table, %counts {q_heads = {hq}, kv_heads = {hkv}}
      : memref<?x?x?xi32>, memref<?x?xi32>
  return
}
)mlir";

const char *const kGroupOps = R"mlir(
func.func @{f}__block_union(%mask: {mask}, %lens: memref<?xi32>, %c: index, %table: {table},
                            %counts: {counts}) {
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = {bs}, kv_heads = {hkv}, exec_group_size = {s}}
      : {mask}, memref<?xi32> into {table}, {counts}
  return
}
func.func @{f}__select_union(%scores: {scores}, %lens: memref<?xi32>, %c: index, %table: {table},
                             %counts: {counts}) {
  compact.select_union %scores, %lens, %c into %table, %counts
      {block_size = {bs}, kv_heads = {hkv}, exec_group_size = {s}, {selection}}
      : {scores}, memref<?xi32> into {table}, {counts}
  return
}
func.func @{f}__score_select_union(%q: {q}, %pooled: {pooled}, %lens: memref<?xi32>,
                                   %table: {table}, %counts: {counts}) {
  compact.score_select_union %q, %pooled, %lens into %table, %counts
      {block_size = {bs}, exec_group_size = {s}, {selection}}
      : {q}, {pooled}, memref<?xi32> into {table}, {counts}
  return
}
func.func @{f}__dense_table(%lens: memref<?xi32>, %table: {table}, %counts: {counts}) {
  compact.dense_table %lens into %table, %counts {block_size = {bs}}
      : memref<?xi32> into {table}, {counts}
  return
}
func.func @{f}__paged_attention(%q: {q}, %kc: {cache}, %vc: {cache}, %pt: memref<?x?xi32>,
                                %lens: memref<?xi32>, %table: {table}, %counts: {counts},
                                %out: {q}, %lse: {lse}) {
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out, %lse
      {block_size = {bs}, layout = {layout}, exec_group_size = {s}}
      : {q}, {cache}, {cache}, memref<?x?xi32>, memref<?xi32>, {table}, {counts}
        into {q}, {lse}
  return
}
func.func @{f}__paged_attention_split(%q: {q}, %kc: {cache}, %vc: {cache}, %pt: memref<?x?xi32>,
                                      %lens: memref<?xi32>, %table: {table}, %counts: {counts},
                                      %out: {q}, %lse: {lse}, %po: {partial_out},
                                      %pl: {partial_lse}) {
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out, %lse
      workspace(%po, %pl : {partial_out}, {partial_lse})
      {block_size = {bs}, layout = {layout}, exec_group_size = {s}}
      : {q}, {cache}, {cache}, memref<?x?xi32>, memref<?xi32>, {table}, {counts}
        into {q}, {lse}
  return
}
func.func @{f}__paged_attention_mma(%q: {q}, %kc: {cache}, %vc: {cache}, %pt: memref<?x?xi32>,
                                    %lens: memref<?xi32>, %table: {table}, %counts: {counts},
                                    %out: {q}, %lse: {lse}) {
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out, %lse
      {block_size = {bs}, layout = {layout}, exec_group_size = {s},
       compact.matrix_path = "mma_sync"}
      : {q}, {cache}, {cache}, memref<?x?xi32>, memref<?xi32>, {table}, {counts}
        into {q}, {lse}
  return
}
)mlir";

} // namespace

std::string compact::codegen::buildLibraryProgram(const std::vector<LibraryConfig> &configs) {
  std::string program;
  for (const LibraryConfig &c : configs) {
    const std::string &t = c.dtype;
    std::map<std::string, std::string> values = {
        {"q", formatv("memref<?x?x{0}x{1}x{2}>", c.qHeads, c.headDim, t)},
        {"kvnew", formatv("memref<?x?x{0}x{1}x{2}>", c.kvHeads, c.headDim, t)},
        {"cache", c.layout == "nhd"
                      ? formatv("memref<?x{0}x{1}x{2}x{3}>", c.pageSize, c.kvHeads, c.headDim, t)
                            .str()
                      : formatv("memref<?x{0}x{1}x{2}x{3}>", c.kvHeads, c.pageSize, c.headDim, t)
                            .str()},
        {"pooled", formatv("memref<?x{0}x?x{1}x{2}>", c.kvHeads, c.headDim, t)},
        {"scores", formatv("memref<?x{0}x?x?xf32>", c.qHeads)},
        {"mask", formatv("memref<?x{0}x?x?xi8>", c.qHeads)},
        {"lse", formatv("memref<?x{0}x?xf32>", c.qHeads)},
        {"partial_out", formatv("memref<?x?x?x{0}x{1}xf32>", c.qHeads, c.headDim)},
        {"partial_lse", formatv("memref<?x?x{0}x?xf32>", c.qHeads)},
        {"layout", "#compact.layout<" + c.layout + ">"},
        {"bs", std::to_string(c.blockSize)},
        {"hq", std::to_string(c.qHeads)},
        {"hkv", std::to_string(c.kvHeads)},
        // Threshold, sink and window (and choose_exec_groups' slack) are
        // kernel arguments; these values only stand in for them.
        {"selection", "mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32, sink = 2, "
                      "window = 4"},
    };
    values["f"] = c.key();
    program += fill(kSharedOps, values);
    for (int64_t s : c.execGroupSizes) {
      // Table rows are dynamic: E = Hq / s per table, or E * Qb (one table
      // per query block), the same kernels.
      values["f"] = c.key() + "__s" + std::to_string(s);
      values["s"] = std::to_string(s);
      values["table"] = "memref<?x?x?xi32>";
      values["counts"] = "memref<?x?xi32>";
      program += fill(kGroupOps, values);
    }
  }
  return program;
}

namespace {

std::string typeName(mlir::Type type) {
  std::string s;
  llvm::raw_string_ostream os(s);
  type.print(os);
  return s;
}

/// What a kernel's gpu.func says about its launch (see CompactToGPU.cpp).
llvm::Expected<KernelRecord> recordKernel(mlir::gpu::GPUFuncOp kernel) {
  KernelRecord r;
  r.name = kernel.getName().str();
  // <config>__s<s>__<op>_<role> or <config>__<op>_<role>
  llvm::StringRef name = kernel.getName();
  auto [config, rest] = name.split("__");
  r.config = config.str();
  auto [groups, tail] = rest.split("__");
  if (!tail.empty() && groups.consume_front("s") && !groups.getAsInteger(10, r.execGroupSize))
    rest = tail;
  auto block = kernel->getAttrOfType<mlir::DenseI64ArrayAttr>("compact.block");
  auto shared = kernel->getAttrOfType<mlir::DenseI64ArrayAttr>("compact.shared_memory");
  auto grid = kernel->getAttrOfType<mlir::StringAttr>("compact.grid");
  auto names = kernel->getAttrOfType<mlir::ArrayAttr>("compact.arg_names");
  if (!block || !shared || !grid || !names)
    return llvm::createStringError("kernel " + r.name + " has no launch attributes");
  for (int i = 0; i < 3; ++i) {
    r.block[i] = block[i];
    r.shared[i] = shared[i];
  }
  r.grid = grid.getValue().str();
  if (auto cluster = kernel->getAttrOfType<mlir::IntegerAttr>("compact.cluster_blocks"))
    r.clusterBlocks = cluster.getInt();
  // The op is the function name's tail up to the kernel's role suffix.
  size_t roleAt = rest.rfind('_');
  r.op = rest.substr(0, roleAt).str();
  r.role = rest.substr(roleAt + 1).str();
  auto types = kernel.getFunctionType().getInputs();
  auto maps = kernel->getAttrOfType<mlir::DictionaryAttr>("compact.tensor_maps");
  for (auto [type, nameAttr] : llvm::zip(types, names)) {
    KernelArgRecord a;
    a.name = mlir::cast<mlir::StringAttr>(nameAttr).getValue().str();
    auto map = maps ? maps.getAs<mlir::DictionaryAttr>(a.name) : mlir::DictionaryAttr();
    if (auto memref = mlir::dyn_cast<mlir::MemRefType>(type)) {
      a.kind = "memref";
      a.rank = memref.getRank();
      a.element = typeName(memref.getElementType());
    } else if (mlir::isa<mlir::LLVM::LLVMPointerType>(type) && map) {
      a.kind = "tensor_map";
      a.of = map.getAs<mlir::StringAttr>("of").getValue().str();
      llvm::ArrayRef<int64_t> box = map.getAs<mlir::DenseI64ArrayAttr>("box").asArrayRef();
      a.box.assign(box.begin(), box.end());
      a.rank = int64_t(box.size());
      // The element type is that of the memref the map describes.
      for (const KernelArgRecord &other : r.args)
        if (other.name == a.of)
          a.element = other.element;
      if (a.element.empty())
        return llvm::createStringError("kernel " + r.name + ": tensor map " + a.name +
                                       " describes " + a.of + ", not an earlier memref argument");
    } else if (type.isIndex()) {
      a.kind = "index";
    } else if (type.isF32()) {
      a.kind = "f32";
    } else {
      return llvm::createStringError("kernel " + r.name + " has an argument of type " +
                                     typeName(type) + " the runtime cannot pass");
    }
    r.args.push_back(a);
  }
  return r;
}

} // namespace

llvm::Expected<GeneratedLibrary>
compact::codegen::generateLibrary(const std::vector<LibraryConfig> &configs,
                                  const mlir::compact::GpuPipelineOptions &options) {
  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  mlir::registerAllToLLVMIRTranslations(registry);
  registry.insert<mlir::compact::CompactDialect>();
  mlir::MLIRContext context(registry);
  std::string diagnostics;
  llvm::raw_string_ostream diagStream(diagnostics);
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &diag) {
    diagStream << diag.getLocation() << ": " << diag << "\n";
    return mlir::success();
  });

  GeneratedLibrary library;
  library.program = buildLibraryProgram(configs);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceString<mlir::ModuleOp>(library.program, &context);
  if (!module)
    return llvm::createStringError("cannot parse the library program:\n" + diagnostics);

  mlir::PassManager kernels(&context);
  mlir::compact::buildGpuKernelPipeline(kernels);
  if (failed(kernels.run(*module)))
    return llvm::createStringError("lowering to GPU kernels failed:\n" + diagnostics);
  llvm::Error error = llvm::Error::success();
  module->walk([&](mlir::gpu::GPUFuncOp kernel) {
    if (error)
      return;
    auto record = recordKernel(kernel);
    if (!record)
      error = record.takeError();
    else
      library.kernels.push_back(std::move(*record));
  });
  if (error)
    return std::move(error);

  mlir::PassManager binary(&context);
  mlir::compact::buildGpuBinaryPipeline(binary, options);
  if (failed(binary.run(*module)))
    return llvm::createStringError("lowering to " + options.format.getValue() +
                                   " failed:\n" + diagnostics);
  module->walk([&](mlir::gpu::BinaryOp op) {
    for (mlir::Attribute object : op.getObjects())
      library.ptx = mlir::cast<mlir::gpu::ObjectAttr>(object).getObject().getValue().str();
  });
  if (library.ptx.empty())
    return llvm::createStringError("the pipeline produced no gpu.binary");
  return library;
}

std::string compact::codegen::manifestJson(const GeneratedLibrary &library, llvm::StringRef chip,
                                           bool haveCubin) {
  llvm::json::Array kernels;
  for (const KernelRecord &k : library.kernels) {
    llvm::json::Array args;
    for (const KernelArgRecord &a : k.args) {
      llvm::json::Object arg{{"name", a.name}, {"kind", a.kind}};
      if (a.kind == "memref" || a.kind == "tensor_map") {
        arg["rank"] = a.rank;
        arg["element"] = a.element;
      }
      if (a.kind == "tensor_map") {
        arg["of"] = a.of;
        arg["box"] = llvm::json::Array(a.box);
        arg["swizzle"] = "128B";
        arg["out_of_bounds"] = "zero";
      }
      args.push_back(std::move(arg));
    }
    kernels.push_back(llvm::json::Object{
        {"name", k.name},
        {"op", k.op},
        {"role", k.role},
        {"config", k.config},
        {"exec_group_size", k.execGroupSize},
        {"block", llvm::json::Array{k.block[0], k.block[1], k.block[2]}},
        {"grid", k.grid},
        {"cluster_blocks", k.clusterBlocks},
        {"shared_memory",
         llvm::json::Object{{"fixed", k.shared[0]},
                            {"per_kv_block", k.shared[1]},
                            {"per_32_kv_blocks", k.shared[2]}}},
        {"args", std::move(args)}});
  }
  llvm::json::Object manifest{
      {"chip", chip},
      {"images", haveCubin ? llvm::json::Array{"kernels.cubin", "kernels.ptx"}
                           : llvm::json::Array{"kernels.ptx"}},
      {"abi", "a memref argument is passed as (allocated ptr, aligned ptr, offset, "
              "sizes[rank], strides[rank]), each 8 bytes; index as i64; f32 as f32; a "
              "tensor_map as the global address (8 bytes) of a CUtensorMap over the memref "
              "`of` (dims and strides of the memref, `box`, 128-byte swizzle, zero fill)"},
      {"kernels", std::move(kernels)}};
  std::string text;
  llvm::raw_string_ostream os(text);
  os << formatv("{0:2}", llvm::json::Value(std::move(manifest))) << "\n";
  return text;
}

std::string compact::codegen::embeddingSource(const GeneratedLibrary &library,
                                              bool imageIsCubin) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << "// Generated by compact-codegen: the kernel table of the library (see\n"
        "// runtime/src/KernelTable.h); the image itself is kernels.cubin or\n"
        "// kernels.ptx, linked in by CompactKernelImage.S. Do not edit.\n\n"
        "#include \"KernelTable.h\"\n\n"
        "extern \"C\" const unsigned char compact_rt_kernel_image[];\n"
        "extern \"C\" const unsigned char compact_rt_kernel_image_end[];\n\n"
        "namespace compact::rt {\nnamespace {\n\n";
  for (size_t i = 0; i < library.kernels.size(); ++i) {
    const KernelRecord &k = library.kernels[i];
    os << "const KernelArg kArgs" << i << "[] = {";
    for (const KernelArgRecord &a : k.args) {
      const char *kind = a.kind == "memref"       ? "ArgKind::Memref"
                         : a.kind == "index"      ? "ArgKind::Index"
                         : a.kind == "tensor_map" ? "ArgKind::TensorMap"
                                                  : "ArgKind::F32";
      os << "{\"" << a.name << "\", " << kind << ", " << a.rank;
      if (a.kind == "tensor_map") {
        os << ", \"" << a.of << "\", {";
        for (int64_t size : a.box)
          os << size << ", ";
        os << "}";
      }
      os << "}, ";
    }
    os << "};\n";
  }
  os << "\nconst KernelInfo kKernels[] = {\n";
  for (size_t i = 0; i < library.kernels.size(); ++i) {
    const KernelRecord &k = library.kernels[i];
    os << formatv("  {{\"{0}\", \"{1}\", \"{2}\", \"{3}\", {4}, {{{5}, {6}, {7}}, {{{8}, {9}, "
                  "{10}}, kArgs{11}, {12}, {13}},\n",
                  k.name, k.config, k.op, k.role, k.execGroupSize, k.block[0], k.block[1],
                  k.block[2], k.shared[0], k.shared[1], k.shared[2], i, k.args.size(),
                  k.clusterBlocks);
  }
  os << "};\n\n} // namespace\n\nconst KernelImage &kernelImage() {\n"
        "  static const KernelImage image = {compact_rt_kernel_image,\n"
        "      size_t(compact_rt_kernel_image_end - compact_rt_kernel_image), "
     << (imageIsCubin ? "ImageFormat::Cubin" : "ImageFormat::Ptx")
     << ",\n      kKernels, sizeof(kKernels) / sizeof(kKernels[0])};\n  return image;\n}\n\n"
        "} // namespace compact::rt\n";
  return text;
}

std::string compact::codegen::imageAssembly(llvm::StringRef imagePath) {
  std::string text;
  llvm::raw_string_ostream os(text);
  // A PTX image is a C string: it gets a terminating zero.
  os << "// Generated by compact-codegen: links the kernel image into the runtime.\n"
        "  .section .rodata.compact_rt_kernel_image,\"a\"\n"
        "  .balign 64\n"
        "  .globl compact_rt_kernel_image\n"
        "compact_rt_kernel_image:\n"
        "  .incbin \""
     << imagePath
     << "\"\n"
        "  .globl compact_rt_kernel_image_end\n"
        "compact_rt_kernel_image_end:\n"
        "  .byte 0\n"
        "  .section .note.GNU-stack,\"\",@progbits\n";
  return text;
}
