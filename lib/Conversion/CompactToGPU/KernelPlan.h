//===- KernelPlan.h - how a compact op becomes GPU kernels ------*- C++ -*-===//
//
// Each compact op lowers to one or more kernels. A KernelPlan says what the
// host passes (the op's buffers and scalars), how it launches (grid from run-
// time sizes, block, dynamic shared memory) and how the kernel body is built;
// convert-compact-to-gpu turns plans into gpu.func + gpu.launch_func. The
// launch rules are also the runtime's (runtime/src/Launch.cpp): keep them in
// step.
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_LIB_CONVERSION_COMPACTTOGPU_KERNELPLAN_H
#define COMPACT_LIB_CONVERSION_COMPACTTOGPU_KERNELPLAN_H

#include "compact/Conversion/GpuBuilder.h"
#include "compact/Dialect/Compact/IR/CompactOps.h"

#include <array>
#include <functional>
#include <string>

namespace mlir::compact::gpu_lowering {

struct KernelPlan {
  /// Suffix of the kernel's name (the op may need several kernels).
  std::string role;
  /// Host values passed to the kernel, in order (memrefs, index, f32), with
  /// the names the kernel library manifest gives them (the op's operand
  /// names, and `chunk_len`, `scale`, `threshold`, `sink`, `window`).
  SmallVector<std::pair<std::string, Value>> args;
  /// Grid (host index values) and block.
  std::array<Value, 3> grid;
  std::array<int64_t, 3> block{1, 1, 1};
  /// Dynamic shared memory: fixed + perBlock * Kb + perWord * ceil(Kb / 32)
  /// bytes, Kb the KV block capacity (`blockCapacity`, a host value; may be
  /// null when only `fixed` is used).
  struct SharedMemory {
    int64_t fixed = 0, perBlock = 0, perWord = 0;
  } shared;
  Value blockCapacity;
  /// The grid as the runtime computes it, for the kernel library manifest.
  std::string gridRule;
  /// Emits the body; `args` are the kernel's arguments (same order as
  /// `args` above), `shared` the kernel's dynamic shared memory (i8,
  /// workgroup).
  std::function<void(GpuBuilder &, ValueRange args, Value shared)> body;
  /// Resident blocks per multiprocessor the kernel is built for (0: any).
  int64_t minBlocksPerMultiprocessor = 0;
  /// The arguments that are TMA tensor maps (see addTensorMapArg): their
  /// name, the memref argument they describe and the box they copy.
  struct TensorMap {
    std::string name, of;
    SmallVector<int64_t, 5> box;
  };
  SmallVector<TensorMap, 2> tensorMaps;
  /// Blocks along grid x that may run as one thread-block cluster (1:
  /// none). The kernel is correct launched either way; the runtime clusters
  /// it when grid x is a multiple and the blocks have work to share.
  int64_t clusterBlocks = 1;
};

/// Appends to `plan` an argument `name` that is a TMA tensor map over the
/// memref `memref` (already an argument, named `of`): boxes of shape `box`
/// (memref order) that land in shared memory with the 128-byte swizzle,
/// out-of-bounds elements zero-filled. On the host it is made by
/// nvgpu.tma.create.descriptor; the kernel receives a generic pointer to the
/// map (global memory) and passes it to the tensor copies. The kernel library
/// manifest records `of` and `box`, so the runtime encodes the same map.
void addTensorMapArg(KernelPlan &plan, LoopBuilder &host, StringRef name, StringRef of,
                     Value memref, ArrayRef<int64_t> box);

using Plans = SmallVector<KernelPlan, 3>;

FailureOr<Plans> planAppendKV(AppendKVOp op, LoopBuilder &host);
FailureOr<Plans> planPoolKeys(PoolKeysOp op, LoopBuilder &host);
FailureOr<Plans> planDenseTable(DenseTableOp op, LoopBuilder &host);
FailureOr<Plans> planBlockScores(BlockScoresOp op, LoopBuilder &host);
FailureOr<Plans> planSelectBlocks(SelectBlocksOp op, LoopBuilder &host);
FailureOr<Plans> planBlockUnion(BlockUnionOp op, LoopBuilder &host);
FailureOr<Plans> planChooseExecGroups(ChooseExecGroupsOp op, LoopBuilder &host);
FailureOr<Plans> planSelectUnion(SelectUnionOp op, LoopBuilder &host);
FailureOr<Plans> planScoreSelectUnion(ScoreSelectUnionOp op, LoopBuilder &host);
FailureOr<Plans> planPagedAttention(PagedAttentionOp op, LoopBuilder &host);

//===----------------------------------------------------------------------===//
// Shared pieces of the kernels
//===----------------------------------------------------------------------===//

inline int64_t staticDim(Value memref, unsigned d) {
  return cast<MemRefType>(memref.getType()).getDimSize(d);
}
inline Type elementType(Value memref) {
  return cast<MemRefType>(memref.getType()).getElementType();
}

/// (page, slot, head, x) indices of a paged cache in either layout.
SmallVector<Value, 4> cacheIndices(KVLayout layout, Value page, Value slot, Value head,
                                   Value x);
/// The page-size dim of a cache operand.
int64_t cachePageSize(Value cache, KVLayout layout);
/// The kv-heads dim of a cache operand.
int64_t cacheKVHeads(Value cache, KVLayout layout);

/// Selection parameters of the thresholding ops. Only the mode changes code;
/// threshold, sink and window are kernel arguments, so one kernel serves
/// every alpha. `thresholdArgument` is what the kernel receives: ln(alpha)
/// for rowmax_log (computed once in fp32 on the host, as the reference does),
/// the threshold itself otherwise.
struct SelectionRule {
  ThresholdMode mode;
  float threshold;
  int64_t sink, window;
  template <typename OpTy>
  static SelectionRule of(OpTy op) {
    return {op.getMode(), op.getThreshold().convertToFloat(), int64_t(op.getSink()),
            int64_t(op.getWindow())};
  }
  float thresholdArgument() const;
  /// Appends `threshold`, `sink` and `window` to a plan's arguments.
  void appendArgs(LoopBuilder &host, KernelPlan &plan) const;
};

/// The selection arguments inside a kernel (see SelectionRule::appendArgs).
struct SelectionArgs {
  ThresholdMode mode;
  Value threshold, sink, window;
};

/// The union bit words of table row (b, r) live in the first ceil(Kb / 32)
/// entries of the row while the union is taken; the table build reads them
/// all before writing the table over them. A table has E * T rows (T per
/// execution group: 1, or Qb for one table per query block; TableRowsIR).
inline int64_t unionWords(int64_t kbCap) { return (kbCap + 31) / 32; }

/// Kernel: zero the union words of every table row. Grid (E * T, B), 128
/// threads.
KernelPlan planClearUnionWords(LoopBuilder &host, Value table);
/// Kernel: the row's chunk blocks plus the union words -> ascending table,
/// count and -1 padding, for the `groups` (E) execution groups. Grid
/// (E * T, B), 256 threads, ceil(Kb/32) * 4 bytes of shared memory.
KernelPlan planTableFromWords(LoopBuilder &host, Value ctxLens, Value chunkLen,
                              int64_t blockSize, int64_t groups, Value table, Value counts);
/// Writes the ascending table of row (b, row) from union words already in
/// shared memory (`words`, ceil(Kb/32) x i32), adding the chunk blocks
/// [chunkBegin, chunkEnd) (TableRowsIR::chunkBlocksBegin / End). All 256
/// threads of the block take part; `scanScratch` is 8 x i32 of shared memory.
void emitTableFromSharedWords(GpuBuilder &gb, Value words, Value scanScratch, Value table,
                              Value counts, Value b, Value row, Value kbCap, Value chunkBegin,
                              Value chunkEnd);

/// Thresholds one (sequence, head, query block) row read through `score`
/// (see compact.select_blocks) with every thread of the block; hands each
/// warp's 32 decisions for kb in [32w, 32w + 32) to `emitWord`, called by
/// every thread with (word index, the warp's ballot, this thread's decision,
/// its kb). Decisions cover kb < kbCap; beyond last(qb) they are 0.
/// `scratch` is 32 x f32 of shared memory.
void emitSelectRow(GpuBuilder &gb, const SeqGeometryIR &g, Value qb, Value kbCap,
                   const SelectionArgs &rule, Value scratch, int64_t threads,
                   function_ref<Value(GpuBuilder &, Value kb)> score,
                   function_ref<void(GpuBuilder &, Value wordIndex, Value word, Value bit,
                                     Value kb)>
                       emitWord);

/// Block-wide max of one f32 per thread (every thread gets the result);
/// `scratch` is 32 x f32 of shared memory.
Value blockMax(GpuBuilder &gb, Value value, Value scratch, int64_t threads);

} // namespace mlir::compact::gpu_lowering

#endif // COMPACT_LIB_CONVERSION_COMPACTTOGPU_KERNELPLAN_H
