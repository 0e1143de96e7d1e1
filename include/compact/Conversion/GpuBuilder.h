//===- GpuBuilder.h - IR construction for generated GPU kernels -*- C++ -*-===//
//
// LoopBuilder plus the GPU vocabulary the kernels of CompactToGPU use: thread
// and block ids, warp shuffles, barriers, the fast exp2, and the tensor-core
// path of sm_80+ (cp.async into swizzled shared memory, ldmatrix, mma.sync
// m16n8k16 with bf16 / f16 operands and f32 accumulators).
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_CONVERSION_GPUBUILDER_H
#define COMPACT_CONVERSION_GPUBUILDER_H

#include "compact/Conversion/LoopBuilder.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::compact {

class GpuBuilder : public LoopBuilder {
public:
  using LoopBuilder::LoopBuilder;

  // Control flow whose bodies build GPU ops too.
  void loop(Value lb, Value ub, Value step, function_ref<void(GpuBuilder &, Value)> body);
  SmallVector<Value> loop(Value lb, Value ub, Value step, ValueRange inits,
                          function_ref<SmallVector<Value>(GpuBuilder &, Value, ValueRange)> body);
  void when(Value cond, function_ref<void(GpuBuilder &)> body);
  SmallVector<Value> when(Value cond, TypeRange types,
                          function_ref<SmallVector<Value>(GpuBuilder &)> thenBody,
                          function_ref<SmallVector<Value>(GpuBuilder &)> elseBody);

  Value threadId() { return gpu::ThreadIdOp::create(builder(), location(), gpu::Dimension::x); }
  Value blockId(gpu::Dimension d) { return gpu::BlockIdOp::create(builder(), location(), d); }
  /// The block id read again where it is used (inline PTX that LLVM neither
  /// hoists nor merges with earlier reads): a value needed only after a long
  /// loop does not hold a register through it.
  Value rereadBlockId(gpu::Dimension d);
  Value laneId();
  Value warpId();
  /// `value` (i32) of lane 0 in every lane: a value ptxas knows is the same
  /// across the warp, so branches on it are not divergent (wgmma in such a
  /// branch is not serialised).
  Value warpUniform(Value value);
  void barrier();

  /// Butterfly shuffle across the full warp (f32 or i32).
  Value shuffleXor(Value value, int32_t offset);
  /// The value of lane - offset (the lane's own value for lane < offset).
  Value shuffleUp(Value value, int32_t offset);
  /// max / sum over the lanes that differ in the bits of `laneMask` (e.g. 3:
  /// the 4 lanes of a quad; 28: the 8 lanes that share lane % 4).
  Value warpMax(Value value, ArrayRef<int32_t> offsets);
  Value warpSum(Value value, ArrayRef<int32_t> offsets);

  /// The lanes of the warp whose `pred` is true, as a bit mask.
  Value ballot(Value pred);

  /// 2^x with MUFU.EX2 (flushes denormals; -inf gives 0).
  Value exp2(Value x);
  /// log2(x) with MUFU.LG2.
  Value log2(Value x);

  /// ldmatrix of `tiles` 8x8 b16 matrices; each lane passes its row address.
  /// Returns one i32 (two packed elements) per matrix.
  SmallVector<Value, 4> ldmatrix(Value smem, ValueRange indices, int tiles,
                                 bool transpose);
  /// mma.sync.m16n8k16.row.col: d = a * b + c with a = 4 x i32, b = 2 x i32
  /// (pairs of `elementType`), c = 4 x f32.
  SmallVector<Value, 4> mma16816(ArrayRef<Value> a, ArrayRef<Value> b, ArrayRef<Value> c,
                                 Type elementType);
  /// Two f32 rounded to `elementType` (bf16 / f16) and packed into an i32,
  /// `lo` in the low half.
  Value pack2(Value lo, Value hi, Type elementType);

  /// cp.async of 16 bytes (8 b16 elements) global -> shared, bypassing L1;
  /// when `valid` is false nothing is read and the destination is zeroed.
  /// Returns the async token.
  Value copyAsync16(Value dst, ValueRange dstIndices, Value src, ValueRange srcIndices,
                    Value valid);
  /// Commits the tokens as one group; waits until at most `pending` groups
  /// of this thread are in flight.
  void commitGroup(ValueRange tokens);
  void waitGroups(int32_t pending);

  // mbarriers (8 bytes of shared memory each) between a producer warp and
  // consumer warps; `address` is the barrier's shared-window address (i32).

  /// mbarrier.init with `count` arrivals per phase (a constant, or an i32).
  void mbarrierInit(Value address, int64_t count);
  void mbarrierInit(Value address, Value count);
  /// Spins until the phase of parity `parity` (i32, 0 / 1) has completed.
  /// A fresh barrier counts the phase of parity 1 as completed.
  void mbarrierWait(Value address, Value parity);
  /// One arrival, from the threads whose `flag` (i1) is true.
  void mbarrierArriveIf(Value address, Value flag);
  /// One arrival on the barrier at the same address in the shared memory of
  /// block `rank` (i32) of this block's cluster, from the threads whose
  /// `flag` (i1) is true (mapa, then the arrive with PTX's default
  /// .release.cta: a cluster-scope release on a hot path costs ~30%, and the
  /// tensor cores' reads it announces completed at wgmma.wait_group).
  void mbarrierArriveInClusterIf(Value address, Value rank, Value flag);
  /// One arrival that also expects `bytes` more of asynchronous copies (the
  /// tensor copies that complete on the barrier) before the phase completes.
  void mbarrierArriveExpectTx(Value address, int64_t bytes);
  /// A tensor copy (TMA, cp.async.bulk.tensor) of the box at `coordinates`
  /// (i32, innermost first) of the tensor map at `tensorMap` (a generic
  /// !llvm.ptr to a CUtensorMap in global memory) to shared byte
  /// `destination` (i64 shared address), completing its bytes on the barrier
  /// at `barrier` (i32). With a `multicastMask` (i16) the box lands at the
  /// same address, and completes on the barrier at the same address, in
  /// every block of the cluster whose rank is a bit of the mask.
  void tensorCopy(Value destination, Value tensorMap, ValueRange coordinates, Value barrier,
                  Value multicastMask = Value());

  // Thread-block clusters (sm_90): the blocks of a cluster run at the same
  // time on neighbouring multiprocessors and can reach each other's shared
  // memory. A launch without clusters is a cluster of one block.

  /// This block's rank in its cluster (i32).
  Value clusterRank();
  /// The blocks in this block's cluster (i32), and along x.
  Value clusterBlocks();
  Value clusterBlocksX();
  /// All threads of all blocks of the cluster meet; what each did before is
  /// visible to all after (release / acquire).
  void clusterBarrier();

  // Hopper (sm_90a) warpgroup matrix multiply, as inline PTX: MLIR's NVVM
  // ops have no register-A form, and the fences must stay where they are.

  /// A PTX statement with side effects and no operands (kept in order with
  /// the other such statements).
  void ptx(StringRef statement);
  /// Passes `values` (f32 / i32) through an empty volatile asm: later
  /// statements cannot be moved above it, so register accesses stay on the
  /// right side of wgmma fences and waits.
  SmallVector<Value> fenceOperands(ValueRange values);
  /// wgmma.mma_async m64nNk16, A and B from shared memory (K-major
  /// descriptors): acc (N/2 f32 per thread) += A * B, or = A * B when
  /// `accumulate` is false.
  SmallVector<Value> wgmmaShared(int64_t n, Type elementType, Value descA, Value descB,
                                 ValueRange acc, bool accumulate);
  /// wgmma.mma_async m64nNk16, A from registers (4 x i32, the accumulator
  /// layout of the previous product), B from shared memory; `transposeB` for
  /// an MN-major B.
  SmallVector<Value> wgmmaRegisterA(int64_t n, Type elementType, ArrayRef<Value> a, Value descB,
                                    ValueRange acc, bool transposeB);
  /// The 64-bit descriptor of a 128-byte-swizzled shared-memory matrix at
  /// shared address `address` (i64) with leading / stride byte offsets.
  Value wgmmaDescriptor(Value address, int64_t leadingBytes, int64_t strideBytes);

  /// A view of the kernel's dynamic shared memory at `byteOffset`.
  Value sharedView(Value base, int64_t byteOffset, ArrayRef<int64_t> shape, Type elementType);

  /// atomicOr on an i32 in global or shared memory.
  void atomicOr(Value value, Value memref, ValueRange indices);
};

/// Swizzled column of a row-major shared tile whose rows are `rowChunks`
/// 16-byte chunks of b16: chunk c of row r is stored at chunk c ^ (r % 8), so
/// the 8 row addresses of an ldmatrix hit 8 different bank groups.
/// `col` is a multiple of 8 elements.
Value swizzledColumn(LoopBuilder &lb, Value row, Value col);

} // namespace mlir::compact

#endif // COMPACT_CONVERSION_GPUBUILDER_H
