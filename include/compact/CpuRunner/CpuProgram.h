//===- CpuProgram.h - compile and run compact programs on the host -*- C++ -*-===//
//
// Builds the chunk-step program of a configuration as `compact` IR, takes it
// through compact-fuse-selection and compact-cpu-pipeline, JIT-compiles it with
// MLIR's ExecutionEngine and calls its functions on host buffers:
//
//   @append_and_pool  append_kv + pool_keys
//   @select           block_scores -> select_blocks -> block_union (scores and
//                     mask are outputs, for reports and tests)
//   @select_fused     the same chain over temporaries, fused by the compiler
//                     into score_select_union
//   @select_external  select_blocks -> block_union from given scores (fused)
//   @union_of_mask    block_union of a given mask
//   @choose_exec_groups  the execution-group cost model on per-head tables
//   @attention        paged_attention over given tables
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_CPURUNNER_CPUPROGRAM_H
#define COMPACT_CPURUNNER_CPUPROGRAM_H

#include "compact/Reference/Reference.h"

#include "llvm/Support/Error.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mlir {
class ExecutionEngine;
} // namespace mlir

namespace compact::cpu {

/// A row-major host buffer with its shape.
template <typename T>
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<T> data;

  Tensor() = default;
  Tensor(std::vector<int64_t> s, T fill = T()) : shape(std::move(s)) {
    size_t n = 1;
    for (int64_t d : shape)
      n *= size_t(d);
    data.assign(n, fill);
  }
  size_t size() const { return data.size(); }
};

enum class DataType { F32, BF16 };

/// What generated code is specialised on (see DESIGN.md, "Kernel ABI").
struct ProgramConfig {
  int64_t qHeads = 16, kvHeads = 4, headDim = 128;
  int64_t pageSize = 64, blockSize = 128;
  int64_t execGroupSize = 4;
  ref::KVLayout layout = ref::KVLayout::NHD;
  DataType dtype = DataType::F32;
  ref::SelectionParams selection{ref::ThresholdMode::RowMaxLog, 0.06f, 2, 4};
  /// choose_exec_groups' slack.
  float groupSlack = 0.5f;
  /// Query rows per attention tile in the loop lowering.
  int64_t rowTile = 16;

  int64_t groups() const { return qHeads / execGroupSize; }
};

/// The program's text (compact dialect), before any pass.
std::string buildChunkProgram(const ProgramConfig &config);

class CpuProgram {
public:
  static llvm::Expected<std::unique_ptr<CpuProgram>>
  compile(const ProgramConfig &config);
  ~CpuProgram();

  const ProgramConfig &config() const { return cfg; }

  // Data buffers (q, k/v, caches, out) are float tensors; for BF16 programs
  // they are rounded to bf16 on the way in and widened on the way out.

  /// append_kv + pool_keys for one chunk. kNew/vNew: [B, C, Hkv, D].
  llvm::Error appendAndPool(const Tensor<float> &kNew, const Tensor<float> &vNew,
                            Tensor<float> &kCache, Tensor<float> &vCache,
                            const Tensor<int32_t> &pageTable,
                            const Tensor<int32_t> &ctxLens, Tensor<float> &pooled);
  /// The unfused selection chain; scores and mask are written too.
  llvm::Error select(const Tensor<float> &q, const Tensor<float> &pooled,
                     const Tensor<int32_t> &ctxLens, Tensor<float> &scores,
                     Tensor<int8_t> &mask, Tensor<int32_t> &table,
                     Tensor<int32_t> &counts);
  /// The fused chain (score_select_union after compact-fuse-selection).
  llvm::Error selectFused(const Tensor<float> &q, const Tensor<float> &pooled,
                          const Tensor<int32_t> &ctxLens, Tensor<int32_t> &table,
                          Tensor<int32_t> &counts);
  /// Thresholding of given scores straight into tables (select_union).
  llvm::Error selectExternal(const Tensor<float> &scores,
                             const Tensor<int32_t> &ctxLens, int64_t chunkLen,
                             Tensor<int32_t> &table, Tensor<int32_t> &counts);
  /// block_union of a given mask.
  llvm::Error unionOfMask(const Tensor<int8_t> &mask, const Tensor<int32_t> &ctxLens,
                          int64_t chunkLen, Tensor<int32_t> &table,
                          Tensor<int32_t> &counts);
  /// choose_exec_groups on per-head tables [B, Hq * T, Kb], in place.
  llvm::Error chooseExecGroups(Tensor<int32_t> &table, Tensor<int32_t> &counts);
  /// paged_attention; lse is [B, Hq, C].
  llvm::Error attention(const Tensor<float> &q, const Tensor<float> &kCache,
                        const Tensor<float> &vCache, const Tensor<int32_t> &pageTable,
                        const Tensor<int32_t> &ctxLens, const Tensor<int32_t> &table,
                        const Tensor<int32_t> &counts, Tensor<float> &out,
                        Tensor<float> &lse);

private:
  CpuProgram(const ProgramConfig &config, std::unique_ptr<mlir::ExecutionEngine> engine);
  ProgramConfig cfg;
  std::unique_ptr<mlir::ExecutionEngine> engine;
};

} // namespace compact::cpu

#endif // COMPACT_CPURUNNER_CPUPROGRAM_H
