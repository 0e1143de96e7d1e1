//===- KernelLibrary.h - the set of kernels an engine links ----*- C++ -*-===//
//
// A kernel library is every compact op compiled for a list of
// configurations (what generated code is specialised on: heads, head dim,
// page and block size, data type, cache layout, execution group sizes).
// Each op becomes a function `<config>__s<s>__<op>` of one program; the GPU
// pipeline turns it into kernels `<function>_<role>` in one PTX module.
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_CODEGEN_KERNELLIBRARY_H
#define COMPACT_CODEGEN_KERNELLIBRARY_H

#include "compact/Pipelines/Pipelines.h"

#include "llvm/Support/Error.h"

#include <array>
#include <string>
#include <vector>

namespace compact::codegen {

struct LibraryConfig {
  int64_t qHeads = 16, kvHeads = 4, headDim = 128;
  int64_t pageSize = 64, blockSize = 128;
  std::string dtype = "bf16"; // bf16 | f16
  std::string layout = "nhd"; // nhd | hnd
  std::vector<int64_t> execGroupSizes = {1, 2, 4};

  /// e.g. "q16_kv4_d128_p64_b128_bf16_nhd": the runtime's lookup key.
  std::string key() const;
};

/// The library the runtime ships: the standard workload (LLaMA-3.1-8B at TP2)
/// and the configurations the GPU tests exercise.
std::vector<LibraryConfig> defaultLibrary();
/// Parses "q16_kv4_d128_p64_b128_bf16_nhd:s1,2,4" entries.
llvm::Expected<LibraryConfig> parseConfig(llvm::StringRef text);

/// The compact program of a library (one op per function).
std::string buildLibraryProgram(const std::vector<LibraryConfig> &configs);

struct KernelArgRecord {
  std::string name;
  std::string kind; // memref | index | f32 | tensor_map
  int64_t rank = 0;
  std::string element;
  /// tensor_map: the memref argument it describes and the box it copies
  /// (memref order; rank entries).
  std::string of;
  std::vector<int64_t> box;
};

struct KernelRecord {
  std::string name, op, role, config;
  int64_t execGroupSize = 0;
  std::array<int64_t, 3> block{1, 1, 1};
  std::array<int64_t, 3> shared{0, 0, 0}; // fixed, per KV block, per 32 KV blocks
  std::string grid;
  std::vector<KernelArgRecord> args;
  /// Blocks along grid x the kernel may be launched with as one cluster.
  int64_t clusterBlocks = 1;
};

struct GeneratedLibrary {
  std::string program; // the compact program
  std::string ptx;
  std::vector<KernelRecord> kernels;
};

/// Compiles the library's program to PTX for `options.chip`.
llvm::Expected<GeneratedLibrary> generateLibrary(const std::vector<LibraryConfig> &configs,
                                                 const mlir::compact::GpuPipelineOptions &options);

/// The manifest (JSON), the C++ kernel table for the runtime
/// (runtime/src/KernelTable.h), and the assembly that links the image (the
/// cubin, or the PTX when there is no ptxas) into the runtime.
std::string manifestJson(const GeneratedLibrary &library, llvm::StringRef chip,
                         bool haveCubin);
std::string embeddingSource(const GeneratedLibrary &library, bool imageIsCubin);
std::string imageAssembly(llvm::StringRef imagePath);

} // namespace compact::codegen

#endif // COMPACT_CODEGEN_KERNELLIBRARY_H
