//===- AttentionKernel.cpp - paged attention on the tensor cores ----------===//
//
// FlashAttention style, one block of 8 compute warps (2 warpgroups) per (128
// packed query rows, execution group, sequence), on one of two matrix paths:
//
//   wgmma    (sm_90a) S = Q K^T with both operands read from 128-byte-
//            swizzled shared memory through descriptors, O += P V with P from
//            registers and V an MN-major shared operand (inline PTX); a third,
//            producer warpgroup brings the K / V tiles in by TMA;
//   mma_sync (sm_80+) ldmatrix fragments and mma.sync m16n8k16: the fallback.
//
// Both keep S, P and O in the same register layout (rows 16w + lane/4 (+8),
// columns 8n + 2 (lane % 4) (+1)), so everything but the two products is
// shared:
//
//   * GQA packing: the group's s heads and the chunk's C rows form one row
//     stream, t-major (row r is token r / s of head e * s + r % s), so every
//     K/V tile serves all s heads and a row tile spans only 128 / s tokens.
//   * The table walk: the group's blocks (ascending) in 128- or 64-key tiles;
//     each 64-key part lies in one page (page size >= 64), found through the
//     page table, and is copied in place into swizzled shared memory. Blocks
//     that start after the tile's last query are skipped. wgmma: a producer
//     warpgroup fills K and V rings, three stages deep, whose stages hand
//     over through mbarriers (full: the copies landed; empty: all eight
//     consumer warps are done), so the consumers never meet at a CTA-wide
//     barrier. The tiles come in by TMA (tensor maps over the cache, the page
//     id a coordinate): one 64 x 64 box per part and head half, 128-byte
//     swizzle; where the context ends inside a part, one-key boxes, the
//     stale slots past the context read as zeros from outside the page.
//     Two neighbouring row tiles that read one table row may run as a
//     2-block cluster, each block multicasting half of every tile to both.
//     mma_sync: all warps copy with cp.async (zero-filling the stale slots),
//     two stages, two barriers per tile.
//   * Per warp 16 rows: S = Q K^T, the causal / context mask on the tiles that
//     need it, the online softmax in base 2 (scale folded into the logits;
//     after the first tile p against the running m, redone exactly for a
//     warp's row where a thread's sum would exceed 2^8), P cast to bf16/f16 in
//     registers (the accumulator layout is the next A operand), O += P V.
//     wgmma: the two consumer warpgroups run one walk and issue their
//     products in strict turns, one's softmax under the other's products.
//
//===----------------------------------------------------------------------===//

#include "KernelPlan.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::compact;
using namespace mlir::compact::gpu_lowering;
using arith::CmpFPredicate;
using arith::CmpIPredicate;

namespace {

constexpr int64_t kRows = 128, kWarps = 8, kThreads = 256;
// The wgmma path adds a producer warpgroup (warps 8-11) that brings K / V
// tiles into kStages-deep rings by TMA; mbarriers say when a stage is full
// and when every consumer warp is done with it. Registers are handed over
// with setmaxnreg inside the block's launch allocation (384 threads x 168, as
// each of the 4 schedulers holds 3 warps): an increase is served only from
// what the decrease freed, so 128 * 40 + 256 * 232 <= 384 * 168, or the last
// consumer warp waits forever. The producer only computes coordinates (40 is
// enough); the consumers use the rest (no spills at 232 in the library, some
// at 216 / 224). Three stages: 224 KB of shared memory with d = 128.
constexpr int64_t kProducerThreads = 128, kStages = 3;
constexpr int64_t kProducerRegisters = 40, kConsumerRegisters = 232;
static_assert(kProducerThreads * kProducerRegisters + kThreads * kConsumerRegisters <=
                  (kThreads + kProducerThreads) * 168,
              "setmaxnreg must stay inside the launch allocation");
// Per stage of each ring (K, V): a "full" and an "empty" barrier.
constexpr int64_t kBarrierBytes = 2 * 2 * kStages * 8;
// Keys per K/V tile: 128 on the wgmma path when a KV block holds whole
// 128-key tiles (half the barriers and softmax bookkeeping per key, and
// m64n128 products for S), else 64.
constexpr int64_t kWideKeys = 128, kNarrowKeys = 64;
// Fewest table entries (KV blocks) a split of a walk takes.
constexpr int64_t kMinSplitEntries = 4;
// The speculative softmax step keeps m while every thread's row sum (so
// every p) of the warp is <= 2^this.
constexpr int64_t kSpeculationLog2 = 8;
constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;

enum class MatrixPath { Wgmma, MmaSync };

struct AttentionConfig {
  MatrixPath path;
  int64_t qHeads, groupSize, execGroupSize, headDim, pageSize, blockSize;
  KVLayout layout;
  float scale;
  Type element;
  bool withLse;
  /// Split-KV: the walk of a row tile is split over the blocks of grid z
  /// (B * S) and the partial results go to the workspace.
  bool split;
  int64_t tileKeys;

  /// Whether two row tiles may walk as a pair of a thread-block cluster
  /// (wgmma, unsplit: the split kernels serve grids too small for L2 traffic
  /// to matter, and their producer has no registers to spare).
  bool pairs() const { return path == MatrixPath::Wgmma && !split; }
  int64_t tileBytes() const { return tileKeys * headDim * 2; }
  int64_t queryBytes() const { return kRows * headDim * 2; }
  int64_t stages() const { return path == MatrixPath::Wgmma ? kStages : 2; }
  int64_t tileRingBytes() const { return queryBytes() + 2 * stages() * tileBytes(); }
  int64_t sharedBytes() const {
    return tileRingBytes() + (path == MatrixPath::Wgmma ? kBarrierBytes : 0);
  }
  int64_t threads() const {
    return path == MatrixPath::Wgmma ? kThreads + kProducerThreads : kThreads;
  }
  int64_t chunksPerRow() const { return headDim / 8; }
};

/// `combine` over `values` as a balanced tree: log2(n) dependent steps, not n
/// (for a power of two the same pairs as neighbours combined level by level).
Value treeReduce(ArrayRef<Value> values, function_ref<Value(Value, Value)> combine) {
  assert(!values.empty() && "nothing to reduce");
  if (values.size() == 1)
    return values.front();
  size_t half = (values.size() + 1) / 2;
  return combine(treeReduce(values.take_front(half), combine),
                 treeReduce(values.drop_front(half), combine));
}

/// Index of the first table entry whose block starts after `maxPos` (the
/// entries ascend): a branch-free binary search.
Value activeEntries(GpuBuilder &gb, Value table, Value b, Value row, Value count, Value maxPos,
                    int64_t blockSize) {
  Value lo = gb.index(0), hi = count;
  for (int i = 0; i < 32; ++i) {
    Value open = gb.cmp(CmpIPredicate::ult, lo, hi);
    Value mid = gb.div(gb.add(lo, hi), gb.index(2));
    Value read = gb.min(mid, gb.max(gb.sub(count, gb.index(1)), gb.index(0)));
    Value kb = gb.toIndex(gb.nonNegative(gb.load(table, {b, row, read})));
    Value before = gb.cmp(CmpIPredicate::ule, gb.mul(kb, gb.index(blockSize)), maxPos);
    lo = gb.select(gb.andI(open, before), gb.add(mid, gb.index(1)), lo);
    hi = gb.select(gb.andI(open, gb.notI(before)), mid, hi);
  }
  return lo;
}

/// Kernel: merges the S partial results of a split walk, row by row, in
/// split order: out = sum_i w_i O_i / sum_i w_i and lse = M + ln sum_i w_i,
/// with w_i = exp(lse_i - M), M the largest lse_i. A warp per (token, head)
/// row, D / 32 elements per lane. Grid (ceil(C * Hq / 4), B), 128 threads.
KernelPlan planCombinePartials(const AttentionConfig &cfg, PagedAttentionOp op,
                               LoopBuilder &host) {
  constexpr int64_t kRowsPerBlock = 4;
  KernelPlan plan;
  plan.role = "combine";
  plan.args = {{"partial_out", op.getPartialOut()},
               {"partial_lse", op.getPartialLse()},
               {"out", op.getOut()}};
  if (cfg.withLse)
    plan.args.push_back({"lse", op.getLse()});
  Value q = op.getQ();
  plan.grid = {host.ceilDiv(host.mul(host.dim(q, 1), host.index(cfg.qHeads)),
                            host.index(kRowsPerBlock)),
               host.dim(q, 0), host.index(1)};
  plan.block = {32 * kRowsPerBlock, 1, 1};
  plan.gridRule = "[ceil(C * Hq / 4), B, 1]";
  plan.body = [cfg](GpuBuilder &gb, ValueRange args, Value) {
    Value partialOut = args[0], partialLse = args[1], out = args[2];
    Value lse = cfg.withLse ? args[3] : Value();
    Type f32 = gb.builder().getF32Type();
    const int64_t width = cfg.headDim / 32;
    auto vectorType = VectorType::get({width}, f32);
    Value b = gb.blockId(gpu::Dimension::y);
    Value rowId = gb.add(gb.mul(gb.blockId(gpu::Dimension::x), gb.index(kRowsPerBlock)),
                         gb.warpId());
    Value chunkLen = gb.dim(out, 1), splits = gb.dim(partialOut, 0);
    gb.when(gb.cmp(CmpIPredicate::ult, rowId, gb.mul(chunkLen, gb.index(cfg.qHeads))),
            [&](GpuBuilder &w) {
      Value t = w.div(rowId, w.index(cfg.qHeads)), h = w.rem(rowId, w.index(cfg.qHeads));
      Value x = w.mul(w.laneId(), w.index(width));
      SmallVector<Value> top = w.loop(
          w.index(0), splits, w.index(1), {w.negInf(f32)},
          [&](GpuBuilder &l, Value i, ValueRange m) -> SmallVector<Value> {
            return {l.maxF(m[0], l.load(partialLse, {i, b, h, t}))};
          });
      Value mSafe = w.select(w.cmpF(CmpFPredicate::OEQ, top[0], w.negInf(f32)), w.f32(0.0f),
                             top[0]);
      Value log2e = w.f32(float(kLog2e));
      SmallVector<Value> sums = w.loop(
          w.index(0), splits, w.index(1), {w.broadcast(w.f32(0.0f), vectorType), w.f32(0.0f)},
          [&](GpuBuilder &l, Value i, ValueRange acc) -> SmallVector<Value> {
            Value weight =
                l.exp2(l.mulF(l.subF(l.load(partialLse, {i, b, h, t}), mSafe), log2e));
            Value part = l.loadVector(partialOut, {i, b, t, h, x}, vectorType, 4 * width);
            return {l.fma(l.broadcast(weight, vectorType), part, acc[0]),
                    l.addF(acc[1], weight)};
          });
      Value seen = w.cmpF(CmpFPredicate::OGT, sums[1], w.f32(0.0f));
      Value inv = w.select(seen, w.divF(w.f32(1.0f), sums[1]), w.f32(0.0f));
      Value result = arith::MulFOp::create(w.builder(), w.location(), sums[0],
                                           w.broadcast(inv, vectorType));
      w.storeVector(w.truncF(result, VectorType::get({width}, cfg.element)), out, {b, t, h, x},
                    2 * width);
      if (lse) {
        w.when(w.cmp(CmpIPredicate::eq, w.laneId(), w.index(0)), [&](GpuBuilder &wl) {
          Value value = wl.addF(mSafe, wl.mulF(wl.log2(sums[1]), wl.f32(float(kLn2))));
          wl.store(wl.select(seen, value, wl.negInf(f32)), lse, {b, h, t});
        });
      }
    });
  };
  return plan;
}

} // namespace

FailureOr<Plans> gpu_lowering::planPagedAttention(PagedAttentionOp op, LoopBuilder &host) {
  Value q = op.getQ(), kCache = op.getKCache();
  AttentionConfig cfg;
  // The mma.sync path on request (op attribute compact.matrix_path), else
  // Hopper's wgmma.
  auto requested = op->getAttrOfType<StringAttr>("compact.matrix_path");
  if (requested && requested.getValue() != "wgmma" && requested.getValue() != "mma_sync")
    return op.emitOpError() << "attribute 'compact.matrix_path' must be \"wgmma\" or "
                               "\"mma_sync\", got "
                            << requested;
  cfg.path = requested && requested.getValue() == "mma_sync" ? MatrixPath::MmaSync
                                                             : MatrixPath::Wgmma;
  cfg.qHeads = staticDim(q, 2);
  cfg.headDim = staticDim(q, 3);
  cfg.layout = op.getLayout();
  cfg.pageSize = cachePageSize(kCache, cfg.layout);
  cfg.groupSize = cfg.qHeads / cacheKVHeads(kCache, cfg.layout);
  cfg.execGroupSize = op.getEffectiveExecGroupSize();
  cfg.blockSize = op.getBlockSize();
  cfg.scale = op.getEffectiveScale();
  cfg.element = elementType(q);
  cfg.withLse = bool(op.getLse());
  cfg.split = bool(op.getPartialOut());
  cfg.tileKeys =
      cfg.path == MatrixPath::Wgmma && cfg.blockSize % kWideKeys == 0 ? kWideKeys : kNarrowKeys;
  if (cfg.headDim != 64 && cfg.headDim != 128)
    return op.emitOpError() << "GPU lowering of attention supports head dim 64 or 128, got "
                            << cfg.headDim;
  if (cfg.pageSize % kNarrowKeys != 0)
    return op.emitOpError() << "GPU lowering of attention needs a page size that is a multiple "
                               "of 64, got "
                            << cfg.pageSize;
  if (!cfg.element.isBF16() && !cfg.element.isF16())
    return op.emitOpError() << "GPU lowering of attention needs bf16 or f16 data, got "
                            << cfg.element;

  KernelPlan plan;
  plan.role = "attention";
  plan.args = {{"q", q},
               {"k_cache", kCache},
               {"v_cache", op.getVCache()},
               {"page_table", op.getPageTable()},
               {"ctx_lens", op.getCtxLens()},
               {"block_table", op.getBlockTable()},
               {"block_counts", op.getBlockCounts()},
               {"out", op.getOut()},
               {"scale", host.f32(cfg.scale)}};
  if (cfg.withLse)
    plan.args.push_back({"lse", op.getLse()});
  if (cfg.split) {
    if (cfg.path != MatrixPath::Wgmma)
      return op.emitOpError() << "a split workspace needs the wgmma matrix path";
    plan.args.push_back({"partial_out", op.getPartialOut()});
    plan.args.push_back({"partial_lse", op.getPartialLse()});
  }
  // wgmma: K / V come in by TMA, in boxes of 64 keys x 64 elements (one page
  // part, one 128-byte-swizzled half of the head), or of one key x 64 where
  // the context ends inside a part.
  if (cfg.path == MatrixPath::Wgmma) {
    SmallVector<int64_t, 4> box =
        cfg.layout == KVLayout::NHD ? SmallVector<int64_t, 4>{1, kNarrowKeys, 1, 64}
                                    : SmallVector<int64_t, 4>{1, 1, kNarrowKeys, 64};
    SmallVector<int64_t, 4> rowBox = {1, 1, 1, 64};
    addTensorMapArg(plan, host, "k_cache_map", "k_cache", kCache, box);
    addTensorMapArg(plan, host, "v_cache_map", "v_cache", op.getVCache(), box);
    addTensorMapArg(plan, host, "k_cache_row_map", "k_cache", kCache, rowBox);
    addTensorMapArg(plan, host, "v_cache_row_map", "v_cache", op.getVCache(), rowBox);
  }
  Value packedRows = host.mul(host.dim(q, 1), host.index(cfg.execGroupSize));
  const int64_t groups = cfg.qHeads / cfg.execGroupSize;
  Value batchBlocks = host.dim(q, 0);
  if (cfg.split)
    batchBlocks = host.mul(batchBlocks, host.dim(op.getPartialOut(), 0));
  plan.grid = {host.ceilDiv(packedRows, host.index(kRows)), host.index(groups), batchBlocks};
  plan.block = {cfg.threads(), 1, 1};
  plan.shared.fixed = cfg.sharedBytes();
  plan.gridRule = cfg.split ? "[ceil(C * s / 128), E, B * S]" : "[ceil(C * s / 128), E, B]";
  plan.minBlocksPerMultiprocessor = 1;
  if (cfg.pairs())
    plan.clusterBlocks = 2;
  plan.body = [cfg, groups](GpuBuilder &gb, ValueRange args, Value shared) {
    Value q = args[0], kCache = args[1], vCache = args[2], pageTable = args[3];
    Value ctxLens = args[4], table = args[5], counts = args[6], out = args[7];
    Value scale = args[8];
    Value lse = cfg.withLse ? args[9] : Value();
    Value partialOut = cfg.split ? args[cfg.withLse ? 10 : 9] : Value();
    Value partialLse = cfg.split ? args[cfg.withLse ? 11 : 10] : Value();
    const size_t mapArgs = 9 + (cfg.withLse ? 1 : 0) + (cfg.split ? 2 : 0);
    Value kMap, vMap, kRowMap, vRowMap;
    if (cfg.path == MatrixPath::Wgmma) {
      kMap = args[mapArgs];
      vMap = args[mapArgs + 1];
      kRowMap = args[mapArgs + 2];
      vRowMap = args[mapArgs + 3];
    }
    Type f32 = gb.builder().getF32Type();
    const int64_t d = cfg.headDim, s = cfg.execGroupSize, cpr = cfg.chunksPerRow();
    const int64_t kKeys = cfg.tileKeys, tilesPerBlock = cfg.blockSize / kKeys;

    Value tileM = gb.blockId(gpu::Dimension::x), e = gb.blockId(gpu::Dimension::y);
    // Grid z: the sequence, and with a split workspace the split too.
    Value b = gb.blockId(gpu::Dimension::z), split;
    if (cfg.split) {
      Value splits = gb.dim(partialOut, 0);
      split = gb.rem(b, splits);
      b = gb.div(b, splits);
    }
    Value tid = gb.threadId(), lane = gb.laneId(), warp = gb.warpId();
    Value chunkLen = gb.dim(q, 1);
    Value ctxLen = gb.toIndex(gb.load(ctxLens, {b}));
    Value prefix = gb.sub(ctxLen, chunkLen);
    Value rows = gb.mul(chunkLen, gb.index(s));
    Value m0 = gb.mul(tileM, gb.index(kRows));
    Value kv = gb.div(gb.mul(e, gb.index(s)), gb.index(cfg.groupSize));
    // The table row of the tile: the group's, or with one table per query
    // block (T = Qb rows per group) that of the tile's query block (a tile
    // of 128 / s tokens lies in one block when bs * s is a multiple of 128,
    // which the runtime checks).
    TableRowsIR tableRows = TableRowsIR::build(gb, gb.dim(table, 1), gb.index(groups));
    auto rowOfTile = [&](Value tile) {
      Value token = gb.div(gb.mul(tile, gb.index(kRows)), gb.index(s));
      return tableRows.rowOf(gb, e, gb.div(token, gb.index(cfg.blockSize)));
    };
    Value row = rowOfTile(tileM);
    // A count beyond the table (bad input) is clamped: nothing outside the
    // table row is read.
    Value count =
        gb.min(gb.toIndex(gb.nonNegative(gb.load(counts, {b, row}))), gb.dim(table, 2));
    // Cluster pairs (wgmma): launched in clusters of two blocks along x,
    // two neighbouring row tiles whose tiles read the same table row walk it
    // together: each block brings in half of every K / V tile and multicasts
    // it to both, halving what the pair reads from L2. Their walk is the
    // longer of the two (the later tile may see one more block of the
    // chunk's diagonal; its keys are masked for the earlier tile's rows).
    // Both blocks decide `paired` alike from the grid alone; a launch
    // without clusters, or a pair whose tiles read different rows, walks
    // alone.
    Value paired = gb.boolean(false), clustered = gb.boolean(false), clusterRank = gb.index(0);
    Value walkEnd = gb.add(m0, gb.index(kRows));
    if (cfg.pairs()) {
      Value clusterBlocks = gb.toIndex(gb.clusterBlocks());
      clustered = gb.cmp(CmpIPredicate::ugt, clusterBlocks, gb.index(1));
      clusterRank = gb.toIndex(gb.clusterRank());
      Value pairFirst = gb.sub(tileM, clusterRank);
      Value otherTile = gb.add(pairFirst, gb.sub(gb.index(1), clusterRank));
      paired = gb.andI(
          gb.andI(gb.cmp(CmpIPredicate::eq, clusterBlocks, gb.index(2)),
                  gb.cmp(CmpIPredicate::eq, gb.toIndex(gb.clusterBlocksX()), gb.index(2))),
          gb.cmp(CmpIPredicate::eq, row, rowOfTile(otherTile)));
      walkEnd = gb.select(paired, gb.mul(gb.add(pairFirst, gb.index(2)), gb.index(kRows)),
                          walkEnd);
    }
    Value lastRow = gb.min(gb.sub(walkEnd, gb.index(1)), gb.sub(rows, gb.index(1)));
    Value minPos = gb.add(prefix, gb.div(m0, gb.index(s)));
    Value maxPos = gb.add(prefix, gb.div(lastRow, gb.index(s)));
    Value active = activeEntries(gb, table, b, row, count, maxPos, cfg.blockSize);
    // This block's entries: all, or its split's [first, first + per), per =
    // ceil(active / S) but at least kMinSplitEntries: a short walk (a sparse
    // table row) is not cut into pieces shorter than a block's fixed cost, its
    // trailing splits stay empty (the table decides on the device, the host
    // only sizes the grid). Deterministic: the split, not the schedule,
    // decides.
    Value firstEntry = gb.index(0);
    if (cfg.split) {
      Value per = gb.max(gb.ceilDiv(active, gb.dim(partialOut, 0)), gb.index(kMinSplitEntries));
      firstEntry = gb.min(gb.mul(split, per), active);
      active = gb.sub(gb.min(gb.add(firstEntry, per), active), firstEntry);
      // An empty split of a full row starts one past the row; its masked
      // tile reads the row's last entry instead (a non-empty one starts
      // inside the row).
      firstEntry = gb.min(firstEntry, gb.sub(gb.dim(table, 2), gb.index(1)));
    }
    Value numTiles = gb.mul(active, gb.index(tilesPerBlock));

    // Shared memory: Q, then the stages of K, then those of V (then, on the
    // wgmma path, the ring barriers). mma_sync: rows of D elements, 16-byte
    // chunks XOR-swizzled by row; wgmma: the canonical 128-byte-swizzle
    // K-major layout, [D / 64 halves][rows][64].
    const bool wgmma = cfg.path == MatrixPath::Wgmma;
    const int64_t halves = (d + 63) / 64, stages = cfg.stages();
    const int64_t keyBytes = cfg.queryBytes(),
                  valueBytes = cfg.queryBytes() + stages * cfg.tileBytes();
    Value queryTile = wgmma ? gb.sharedView(shared, 0, {halves, kRows, 64}, cfg.element)
                            : gb.sharedView(shared, 0, {kRows, d}, cfg.element);
    // mma_sync reads the K / V stages through views; wgmma addresses them by
    // byte (TMA destinations, matrix descriptors).
    Value keyTiles, valueTiles;
    if (!wgmma) {
      keyTiles = gb.sharedView(shared, keyBytes, {stages, kKeys, d}, cfg.element);
      valueTiles = gb.sharedView(shared, valueBytes, {stages, kKeys, d}, cfg.element);
    }
    // Where the 16-byte chunk of row r at column x (a multiple of 8) goes.
    auto placement = [&](LoopBuilder &l, Value r, Value x) -> SmallVector<Value, 3> {
      if (!wgmma)
        return {r, swizzledColumn(l, r, x)};
      Value half = l.div(x, l.index(64));
      return {half, r, swizzledColumn(l, r, l.rem(x, l.index(64)))};
    };
    auto inStage = [](Value stage, SmallVector<Value, 3> at) {
      SmallVector<Value, 4> indices = {stage};
      indices.append(at.begin(), at.end());
      return indices;
    };

    // First key of tile `tile` of the table walk.
    auto tileStart = [&](GpuBuilder &l, Value tile) {
      Value entry = l.add(firstEntry, l.div(tile, l.index(tilesPerBlock)));
      Value kb = l.toIndex(l.nonNegative(l.load(table, {b, row, entry})));
      return l.add(l.mul(kb, l.index(cfg.blockSize)),
                   l.mul(l.rem(tile, l.index(tilesPerBlock)), l.index(kKeys)));
    };
    // The page id (i32, as stored) and slot of the 64-key part starting at
    // key `jPart` (a page holds whole parts; a 128-key tile spans two pages
    // of 64). A part past the context (the tail of a partial last block)
    // uses the context's last page, so no page-table entry beyond the
    // sequence is read; its keys are not copied from the page.
    auto partPage = [&](GpuBuilder &l, Value jPart) -> std::pair<Value, Value> {
      Value lastKey = l.sub(l.max(ctxLen, l.index(1)), l.index(1));
      Value pageIndex = l.min(l.div(l.min(jPart, lastKey), l.index(cfg.pageSize)),
                              l.sub(l.dim(pageTable, 1), l.index(1)));
      return {l.load(pageTable, {b, pageIndex}), l.rem(jPart, l.index(cfg.pageSize))};
    };
    // mma_sync: cp.async copies of the K and V tile `tile` (zeros unless
    // `want`) into `stage` by all threads; their tokens go to `tokens`.
    auto issueTile = [&](GpuBuilder &l, Value tile, Value want, Value stage,
                         SmallVector<Value> &tokens) {
      Value j0 = tileStart(l, tile);
      const int64_t rowsPerStep = kThreads / cpr, stepsPerPart = kNarrowKeys / rowsPerStep;
      for (int64_t part = 0; part < kKeys / kNarrowKeys; ++part) {
        auto [pageId, slot] = partPage(l, l.add(j0, l.index(part * kNarrowKeys)));
        Value page = l.toIndex(pageId);
        // Step i copies rows [i * rowsPerStep, (i + 1) * rowsPerStep) of the part.
        auto copyStep = [&](GpuBuilder &ls, Value i) {
          Value c = ls.add(ls.mul(i, ls.index(kThreads)), tid);
          Value inPart = ls.div(c, ls.index(cpr));
          Value r = ls.add(inPart, ls.index(part * kNarrowKeys));
          Value x = ls.mul(ls.rem(c, ls.index(cpr)), ls.index(8));
          // Keys past the context are zero-filled: not even their (stale)
          // page slots are read.
          Value valid = ls.andI(want, ls.cmp(CmpIPredicate::ult, ls.add(j0, r), ctxLen));
          SmallVector<Value, 4> src = cacheIndices(cfg.layout, page, ls.add(slot, inPart), kv, x);
          SmallVector<Value, 4> at = inStage(stage, placement(ls, r, x));
          tokens.push_back(ls.copyAsync16(keyTiles, at, kCache, src, valid));
          tokens.push_back(ls.copyAsync16(valueTiles, at, vCache, src, valid));
        };
        for (int64_t i = 0; i < stepsPerPart; ++i)
          copyStep(l, l.index(i));
      }
    };

    Value anyTile = gb.cmp(CmpIPredicate::ugt, numTiles, gb.index(0));
    // The walk's tiles: with none, one masked tile of zeros keeps the code
    // straight (its rows end with l = 0 and are written as zeros).
    Value walkTiles = gb.max(numTiles, gb.index(1));

    Value sharedBase;
    if (wgmma) {
      Value address = memref::ExtractAlignedPointerAsIndexOp::create(gb.builder(), gb.location(),
                                                                     shared);
      sharedBase = arith::IndexCastUIOp::create(gb.builder(), gb.location(),
                                                gb.builder().getI64Type(), address);
    }
    // The shared address (i64) of byte `offset` (index) of the shared memory.
    auto sharedAddress = [&](GpuBuilder &l, Value offset) {
      return arith::AddIOp::create(
          l.builder(), l.location(), sharedBase,
          arith::IndexCastUIOp::create(l.builder(), l.location(), l.builder().getI64Type(),
                                       offset));
    };
    // wgmma: tile j of the walk goes to stage j % kStages of its ring (0: K,
    // 1: V); its "full" barrier completes phase j / kStages once the copies
    // landed, its "empty" barrier once every consumer warp is done with it.
    auto stageOf = [&](GpuBuilder &l, Value tile) { return l.rem(tile, l.index(kStages)); };
    auto phaseParity = [&](GpuBuilder &l, Value tile, bool flip) {
      Value parity = l.rem(l.div(tile, l.index(kStages)), l.index(2));
      return l.toI32(flip ? l.sub(l.index(1), parity) : parity);
    };
    auto ringBarrier = [&](GpuBuilder &l, bool empty, int64_t ring, Value tile) {
      int64_t first = cfg.tileRingBytes() + ((empty ? 2 : 0) + ring) * kStages * 8;
      Value offset = l.add(l.index(first), l.mul(stageOf(l, tile), l.index(8)));
      return arith::TruncIOp::create(l.builder(), l.location(), l.builder().getI32Type(),
                                     sharedAddress(l, offset))
          .getResult();
    };

    // All threads of the block meet, and with clusters those of the whole
    // cluster (`orBlock` false: only then).
    auto meetCluster = [&](GpuBuilder &g, bool orBlock) {
      g.when(
          clustered, {},
          [](GpuBuilder &c) -> SmallVector<Value> {
            c.clusterBarrier();
            return {};
          },
          [&](GpuBuilder &c) -> SmallVector<Value> {
            if (orBlock)
              c.barrier();
            return {};
          });
    };

    scf::IfOp roles;
    if (wgmma) {
      // The producer warpgroup walks the table ahead of the consumers, as far
      // as the rings' free stages let it: per tile, K then V, each after its
      // stage was released. Each producer thread arrives once per stage fill
      // (the leader with the tile's bytes), so a full barrier expects
      // kProducerThreads arrivals and the bytes, an empty one kWarps, or
      // 2 kWarps when paired: a stage is refilled in both blocks of the pair
      // at once, so the consumers of both release it.
      Value emptyArrivals =
          gb.toI32(gb.select(paired, gb.index(2 * kWarps), gb.index(kWarps)));
      gb.when(gb.cmp(CmpIPredicate::eq, tid, gb.index(0)), [&](GpuBuilder &w) {
        for (int64_t ring = 0; ring < 2; ++ring)
          for (int64_t stage = 0; stage < kStages; ++stage) {
            w.mbarrierInit(ringBarrier(w, false, ring, w.index(stage)), kProducerThreads);
            w.mbarrierInit(ringBarrier(w, true, ring, w.index(stage)), emptyArrivals);
          }
        w.when(clustered, [](GpuBuilder &c) { c.ptx("fence.mbarrier_init.release.cluster;"); });
      });
      // The other block of the pair signals these barriers and copies into
      // this block only once they exist.
      meetCluster(gb, /*orBlock=*/true);
      // Producer and consumers are the two sides of one branch: what only
      // the consumers use is not live through the producer's small register
      // budget. The consumer side is the rest of the kernel (until the end of
      // the body, where the insertion point leaves this region again).
      Value producer = gb.cmp(CmpIPredicate::uge, warp, gb.index(kWarps));
      roles = scf::IfOp::create(gb.builder(), gb.location(), producer, /*withElseRegion=*/true);
      gb.builder().setInsertionPoint(roles.thenBlock()->getTerminator());
      gb.ptx("setmaxnreg.dec.sync.aligned.u32 " + std::to_string(kProducerRegisters) + ";");
      Value producerThread = gb.sub(tid, gb.index(kThreads));
      Value leader = gb.cmp(CmpIPredicate::eq, producerThread, gb.index(0));
      // The row box of a partially valid part this thread copies: row
      // `boxRow` of head half `boxHalf` (threads past halves x 64 copy none).
      Value boxRow = gb.rem(producerThread, gb.index(kNarrowKeys));
      Value boxHalf = gb.div(producerThread, gb.index(kNarrowKeys));
      Value outside = gb.toI32(gb.index(cfg.pageSize)); // a slot past every page
      // Paired, box `unit` (part * halves + half) of a tile is this block's
      // to bring in (multicast to both) when unit % 2 is its rank.
      Value pairMask = arith::ConstantIntOp::create(gb.builder(), gb.location(),
                                                    gb.builder().getI16Type(), 3);
      auto mine = [&](GpuBuilder &t, Value unit) {
        return t.orI(t.notI(paired), t.cmp(CmpIPredicate::eq, t.rem(unit, t.index(2)),
                                           clusterRank));
      };
      gb.loop(gb.index(0), walkTiles, gb.index(1), [&](GpuBuilder &l, Value tile) {
        // Every 64-key part of the tile comes in by TMA and fills its whole
        // place in the stage, so the leader expects the tile's bytes. A part
        // inside the context is one 64-row box per head half (leader); a part
        // past it (or of the masked tile of an empty walk) is the same box at
        // a slot outside the page, which TMA fills with zeros; a part the
        // context ends in is 64 one-row boxes per half, one per thread, the
        // rows past the context again outside the page: no stale slot of the
        // last page is read. The other producer threads just arrive.
        Value j0 = tileStart(l, tile);
        Value valid = l.select(l.cmp(CmpIPredicate::ult, tile, numTiles),
                               l.sub(l.max(ctxLen, j0), j0), l.index(0));
        // Per part, once for both rings: its page (a bad page id is out of
        // the map's bounds too: TMA reads zeros), slot and valid rows.
        struct Part {
          Value page, slot, rows, partial;
        };
        SmallVector<Part, 2> parts;
        for (int64_t part = 0; part < kKeys / kNarrowKeys; ++part) {
          auto [page, slot] = partPage(l, l.add(j0, l.index(part * kNarrowKeys)));
          Value rows = l.min(l.sub(l.max(valid, l.index(part * kNarrowKeys)),
                                   l.index(part * kNarrowKeys)),
                             l.index(kNarrowKeys));
          Value partial = l.andI(l.cmp(CmpIPredicate::ugt, rows, l.index(0)),
                                 l.cmp(CmpIPredicate::ult, rows, l.index(kNarrowKeys)));
          parts.push_back({page, l.toI32(slot), rows, partial});
        }
        for (int64_t ring = 0; ring < 2; ++ring) {
          Value full = ringBarrier(l, false, ring, tile), stage = stageOf(l, tile);
          Value map = ring == 0 ? kMap : vMap, rowMap = ring == 0 ? kRowMap : vRowMap;
          const int64_t ringBytes = ring == 0 ? keyBytes : valueBytes;
          l.mbarrierWait(ringBarrier(l, true, ring, tile), phaseParity(l, tile, /*flip=*/true));
          l.mbarrierArriveIf(full, l.notI(leader));
          l.when(leader, [&](GpuBuilder &t) { t.mbarrierArriveExpectTx(full, cfg.tileBytes()); });
          for (int64_t part = 0; part < kKeys / kNarrowKeys; ++part) {
            const Part &p = parts[part];
            // Copies the box of `boxMap` at slot `at` to row `r` (index) of
            // head half `half` of the part's place in the stage.
            auto copy = [&](GpuBuilder &t, Value boxMap, Value half, Value r, Value at) {
              Value offset = t.add(
                  t.add(t.index(ringBytes + part * kNarrowKeys * 128),
                        t.mul(half, t.index(kKeys * 128))),
                  t.add(t.mul(stage, t.index(cfg.tileBytes())), t.mul(r, t.index(128))));
              SmallVector<Value, 4> c = cacheIndices(cfg.layout, p.page, at, t.toI32(kv),
                                                     t.toI32(t.mul(half, t.index(64))));
              SmallVector<Value, 4> coordinates = {c[3], c[2], c[1], c[0]};
              Value dst = sharedAddress(t, offset);
              Value unit = t.add(t.index(part * halves), half);
              t.when(mine(t, unit), [&](GpuBuilder &u) {
                u.when(
                    paired, {},
                    [&](GpuBuilder &m) -> SmallVector<Value> {
                      m.tensorCopy(dst, boxMap, coordinates, full, pairMask);
                      return {};
                    },
                    [&](GpuBuilder &m) -> SmallVector<Value> {
                      m.tensorCopy(dst, boxMap, coordinates, full);
                      return {};
                    });
              });
            };
            l.when(l.andI(leader, l.notI(p.partial)), [&](GpuBuilder &t) {
              Value at = t.select(t.cmp(CmpIPredicate::eq, p.rows, t.index(0)), outside, p.slot);
              for (int64_t half = 0; half < halves; ++half)
                copy(t, map, t.index(half), t.index(0), at);
            });
            l.when(l.andI(p.partial, l.cmp(CmpIPredicate::ult, boxHalf, l.index(halves))),
                   [&](GpuBuilder &t) {
              Value at = t.select(t.cmp(CmpIPredicate::ult, boxRow, p.rows),
                                  t.add(p.slot, t.toI32(boxRow)), outside);
              copy(t, rowMap, boxHalf, boxRow, at);
            });
          }
        }
      });
      gb.builder().setInsertionPoint(roles.elseBlock()->getTerminator());
      gb.ptx("setmaxnreg.inc.sync.aligned.u32 " + std::to_string(kConsumerRegisters) + ";");
    }

    // Prologue: the row tile's queries (and on the mma_sync path the first K
    // and V tile).
    SmallVector<Value> tokens;
    for (int64_t i = 0; i < kRows * cpr / kThreads; ++i) {
      Value c = gb.add(gb.index(i * kThreads), tid);
      Value r = gb.div(c, gb.index(cpr));
      Value x = gb.mul(gb.rem(c, gb.index(cpr)), gb.index(8));
      Value packed = gb.add(m0, r);
      Value valid = gb.cmp(CmpIPredicate::ult, packed, rows);
      Value packedRead = gb.min(packed, gb.sub(rows, gb.index(1)));
      Value t = gb.div(packedRead, gb.index(s));
      Value h = gb.add(gb.mul(e, gb.index(s)), gb.rem(packedRead, gb.index(s)));
      tokens.push_back(gb.copyAsync16(queryTile, placement(gb, r, x), q, {b, t, h, x}, valid));
    }
    if (!wgmma)
      issueTile(gb, gb.index(0), anyTile, gb.index(0), tokens);
    gb.commitGroup(tokens);
    gb.waitGroups(0);
    if (wgmma) {
      // cp.async wrote what the tensor cores read through the async proxy;
      // named barrier 1 holds the consumer warps only.
      gb.ptx("fence.proxy.async.shared::cta;");
      gb.ptx("bar.sync 1, " + std::to_string(kThreads) + ";");
    } else {
      gb.barrier();
    }

    // mma_sync: this warp's 16 query rows as A fragments, for the whole head
    // dim. wgmma: descriptors of this warpgroup's 64 rows.
    SmallVector<SmallVector<Value, 4>> qFrag;
    Value warpgroupRows;
    if (!wgmma) {
      Value r = gb.add(gb.mul(warp, gb.index(16)), gb.rem(lane, gb.index(16)));
      for (int64_t ks = 0; ks < d / 16; ++ks) {
        Value col = gb.add(gb.index(ks * 16), gb.mul(gb.div(lane, gb.index(16)), gb.index(8)));
        qFrag.push_back(gb.ldmatrix(queryTile, {r, swizzledColumn(gb, r, col)}, 4, false));
      }
    } else {
      // The warpgroup, broadcast from lane 0: the walks branch on it.
      warpgroupRows = gb.toIndex(gb.warpUniform(gb.toI32(gb.div(warp, gb.index(4)))));
    }
    Value groupRow = gb.div(lane, gb.index(4)), quadCol = gb.rem(lane, gb.index(4));
    Value rowLo = gb.add(gb.add(m0, gb.mul(warp, gb.index(16))), groupRow);
    Value rowHi = gb.add(rowLo, gb.index(8));
    Value posLo = gb.add(prefix, gb.div(rowLo, gb.index(s)));
    Value posHi = gb.add(prefix, gb.div(rowHi, gb.index(s)));
    // Logits in log2 units: exp2 is one MUFU instruction.
    Value logitScale = gb.mulF(scale, gb.f32(float(kLog2e)));

    const int64_t oTiles = d / 8;

    // S = Q K^T of the K tile in `stage`: 16 rows x 64 keys per warp, in the
    // accumulator layout (n-tile nt, element c) -> index 4 nt + c. wgmma: the
    // products are issued and committed as one group, not waited for.
    auto issueScores = [&](GpuBuilder &l, Value stage) {
      // Per k-step of 16: +32 bytes inside the 128-byte swizzle atom, the
      // next 64-column half after four steps.
      Value qRows = l.mul(warpgroupRows, l.index(64 * 128));
      Value kTile = l.add(l.index(keyBytes), l.mul(stage, l.index(cfg.tileBytes())));
      SmallVector<Value> acc(kKeys / 2, l.f32(0.0f));
      l.ptx("wgmma.fence.sync.aligned;");
      for (int64_t ks = 0; ks < d / 16; ++ks) {
        int64_t step = (ks % 4) * 32;
        Value qAt = l.add(qRows, l.index(step + (ks / 4) * kRows * 128));
        Value kAt = l.add(kTile, l.index(step + (ks / 4) * kKeys * 128));
        Value descQ = l.wgmmaDescriptor(sharedAddress(l, qAt), 16, 1024);
        Value descK = l.wgmmaDescriptor(sharedAddress(l, kAt), 16, 1024);
        acc = l.wgmmaShared(kKeys, cfg.element, descQ, descK, acc, /*accumulate=*/ks > 0);
      }
      l.ptx("wgmma.commit_group.sync.aligned;");
      return acc;
    };
    auto scoresMmaSync = [&](GpuBuilder &l, Value stage) {
      SmallVector<SmallVector<Value, 4>> sAcc(8, SmallVector<Value, 4>(4, l.f32(0.0f)));
      for (int64_t ks = 0; ks < d / 16; ++ks)
        for (int64_t np = 0; np < 4; ++np) {
          Value key = l.add(l.index(np * 16),
                            l.add(l.mul(l.div(l.laneId(), l.index(16)), l.index(8)),
                                  l.rem(l.laneId(), l.index(8))));
          Value col = l.add(l.index(ks * 16),
                            l.mul(l.rem(l.div(l.laneId(), l.index(8)), l.index(2)), l.index(8)));
          SmallVector<Value, 4> bFrag =
              l.ldmatrix(keyTiles, {stage, key, swizzledColumn(l, key, col)}, 4, false);
          sAcc[2 * np] = l.mma16816(qFrag[ks], {bFrag[0], bFrag[1]}, sAcc[2 * np], cfg.element);
          sAcc[2 * np + 1] =
              l.mma16816(qFrag[ks], {bFrag[2], bFrag[3]}, sAcc[2 * np + 1], cfg.element);
        }
      SmallVector<Value> acc;
      for (auto &frag : sAcc)
        acc.append(frag.begin(), frag.end());
      return acc;
    };

    // The online softmax of tile `tile` (S in `acc`, raw) for the two rows
    // this thread holds: logits in log2 units, keys after the row's position,
    // past the context or of a tile that does not exist (`real` false) masked,
    // the running m and sums, the factor that rescales O, and P as the A
    // operand of P V (the accumulator layout is the A-fragment layout). m is
    // a maximum the rows have seen (the speculative step may leave it up to
    // 8 below the true one, in log2 units); O / l does not depend on it.
    struct SoftmaxStep {
      SmallVector<Value> pRegs;
      Value m[2], l[2], alpha[2];
      /// Whether m of one of this thread's rows grew (else alpha is 1).
      Value grew;
    };
    // The scale stays out of the scores until exp2: max(scale * x) =
    // scale * max(x) (scale > 0), and p = exp2(x * scale - m) is one FFMA.
    // Maxima and sums are trees, not chains of dependent instructions.
    // `speculate`: p against mOld first (see speculativeRow); mOld must be
    // finite or -inf.
    auto softmaxTile = [&](GpuBuilder &l, Value tile, Value real, ArrayRef<Value> acc,
                           ArrayRef<Value> mOld, ArrayRef<Value> lOld, bool speculate) {
      SmallVector<Value> logits(acc.begin(), acc.end());
      Value j0 = tileStart(l, tile);
      Value jLast = l.add(j0, l.index(kKeys - 1));
      Value needMask = l.orI(l.notI(real), l.orI(l.cmp(CmpIPredicate::ugt, jLast, minPos),
                                            l.cmp(CmpIPredicate::uge, jLast, ctxLen)));
      SmallVector<Type> types(logits.size(), f32);
      logits = l.when(
          needMask, types,
          [&](GpuBuilder &lm) {
            SmallVector<Value> masked;
            for (int64_t nt = 0; nt < kKeys / 8; ++nt)
              for (int64_t c = 0; c < 4; ++c) {
                Value j = lm.add(lm.add(j0, lm.index(nt * 8 + c % 2)),
                                 lm.mul(quadCol, lm.index(2)));
                Value pos = c < 2 ? posLo : posHi;
                Value visible = lm.andI(real, lm.andI(lm.cmp(CmpIPredicate::ule, j, pos),
                                                      lm.cmp(CmpIPredicate::ult, j, ctxLen)));
                masked.push_back(lm.select(visible, logits[nt * 4 + c], lm.negInf(f32)));
              }
            return masked;
          },
          [&](GpuBuilder &) { return logits; });

      // One row's part of a SoftmaxStep: P packed in pairs (the thread's two
      // neighbouring keys of each 8-key n-tile).
      struct RowStep {
        SmallVector<Value> packed;
        Value m, l, alpha, grew;
      };
      // p = exp2(x * scale - m) of this thread's logits in row `half` (0:
      // rowLo, 1: rowHi; contract: the multiply and subtract fuse into one
      // FFMA), packed in pairs; returns them and this thread's sum of them.
      auto exponentiate = [&](GpuBuilder &e, int half, Value m, Value &sum) {
        auto contract = arith::FastMathFlags::contract;
        SmallVector<Value> p, packed;
        for (int64_t nt = 0; nt < kKeys / 8; ++nt) {
          for (int64_t c = 2 * half; c < 2 * half + 2; ++c)
            p.push_back(
                e.exp2(e.subF(e.mulF(logits[nt * 4 + c], logitScale, contract), m, contract)));
          packed.push_back(e.pack2(p[p.size() - 2], p.back(), cfg.element));
        }
        sum = treeReduce(p, [&](Value a, Value b) { return e.addF(a, b); });
        return packed;
      };
      // The exact step of a row: the row's maximum over the tile first (a
      // tree, then the row's 4 threads), then p against the new maximum.
      auto exactRow = [&](GpuBuilder &e, int half) {
        RowStep step;
        SmallVector<Value> row;
        for (int64_t nt = 0; nt < kKeys / 8; ++nt)
          row.append({logits[nt * 4 + 2 * half], logits[nt * 4 + 2 * half + 1]});
        Value mx = treeReduce(row, [&](Value a, Value b) { return e.maxF(a, b); });
        mx = e.mulF(e.warpMax(mx, {1, 2}), logitScale);
        step.m = e.maxF(mOld[half], mx);
        Value mSafe =
            e.select(e.cmpF(CmpFPredicate::OEQ, step.m, e.negInf(f32)), e.f32(0.0f), step.m);
        step.alpha = e.exp2(e.subF(mOld[half], mSafe));
        Value sum;
        step.packed = exponentiate(e, half, mSafe, sum);
        step.l = e.addF(e.mulF(lOld[half], step.alpha), sum);
        step.grew = e.cmpF(CmpFPredicate::UNE, step.m, mOld[half]);
        return step;
      };
      // The speculative step of a row: p against the maximum so far, without
      // the tile's (its tree and shuffles are a fifth of the softmax's
      // instructions and the head of its dependency chain). It stands when
      // every sum of the row half in this warp is at most 2^kSpeculationLog2,
      // so no p exceeds it and m, O and l keep their scale (p up to 2^8 is as
      // exact in bf16 and f32 as p up to 1, and O / l and m + log2 l do not
      // depend on which m was subtracted). Else (the first tile: m = -inf
      // gives inf / NaN; a tile whose keys outgrow the maximum) the warp
      // takes the exact step. Uniform per warp: a row's 4 threads share m.
      auto speculativeRow = [&](int half) {
        Value sum;
        SmallVector<Value> packed = exponentiate(l, half, mOld[half], sum);
        // Ordered: a NaN sum does not fit.
        Value fits =
            l.cmpF(CmpFPredicate::OLE, sum, l.f32(float(int64_t(1) << kSpeculationLog2)));
        Value warpFits = l.cmp(CmpIPredicate::eq, l.ballot(l.notI(fits)), l.i32(0));
        auto flatten = [](const RowStep &step) {
          SmallVector<Value> values(step.packed.begin(), step.packed.end());
          values.append({step.m, step.l, step.alpha, step.grew});
          return values;
        };
        SmallVector<Type> types(packed.size(), l.builder().getI32Type());
        types.append({f32, f32, f32, l.builder().getI1Type()});
        SmallVector<Value> chosen = l.when(
            warpFits, types,
            [&](GpuBuilder &t) {
              return flatten({packed, mOld[half], t.addF(lOld[half], sum), t.f32(1.0f),
                              t.boolean(false)});
            },
            [&](GpuBuilder &e) { return flatten(exactRow(e, half)); });
        const size_t n = packed.size();
        return RowStep{SmallVector<Value>(chosen.begin(), chosen.begin() + n), chosen[n],
                       chosen[n + 1], chosen[n + 2], chosen[n + 3]};
      };

      SoftmaxStep step;
      RowStep rows[2];
      for (int half = 0; half < 2; ++half) {
        rows[half] = speculate ? speculativeRow(half) : exactRow(l, half);
        step.m[half] = rows[half].m, step.l[half] = rows[half].l;
        step.alpha[half] = rows[half].alpha;
      }
      step.grew = l.orI(rows[0].grew, rows[1].grew);
      // The A fragment of P V: per 16 keys, rows lo / hi of keys 0-7, then of
      // keys 8-15.
      for (int64_t kk = 0; kk < kKeys / 16; ++kk)
        step.pRegs.append({rows[0].packed[2 * kk], rows[1].packed[2 * kk],
                           rows[0].packed[2 * kk + 1], rows[1].packed[2 * kk + 1]});
      return step;
    };
    // O *= alpha, skipped (a uniform branch) when no row of the warp has a
    // new m: alpha is then exactly 1, and after the first tiles m rarely
    // grows (the speculative step keeps it).
    auto rescale = [&](GpuBuilder &l, MutableArrayRef<Value> o, const SoftmaxStep &step) {
      Value warpGrew = l.cmp(CmpIPredicate::ne, l.ballot(step.grew), l.i32(0));
      SmallVector<Value> kept(o.begin(), o.end());
      SmallVector<Value> result = l.when(
          warpGrew, ValueRange(kept).getTypes(),
          [&](GpuBuilder &t) {
            SmallVector<Value> scaled;
            for (int64_t dn = 0; dn < oTiles; ++dn)
              for (int64_t c = 0; c < 4; ++c)
                scaled.push_back(t.mulF(kept[dn * 4 + c], step.alpha[c / 2]));
            return scaled;
          },
          [&](GpuBuilder &) { return kept; });
      llvm::copy(result, o.begin());
    };

    // O += P V of the V tile in `stage`, P (16 x 64 per warp) from registers.
    // wgmma: V is MN-major (head dim contiguous): the two 64-wide halves are
    // kKeys * 128 bytes apart (leading offset), 8-key groups 1024 (stride),
    // one k-step of 16 keys is 2048 bytes; issued and committed, not waited.
    auto issueValues = [&](GpuBuilder &l, Value stage, ArrayRef<Value> pRegs,
                           ArrayRef<Value> o) {
      SmallVector<Value> regs(o.begin(), o.end());
      regs.append(pRegs.begin(), pRegs.end());
      regs = l.fenceOperands(regs); // O and P are written before the fence
      SmallVector<Value> acc(regs.begin(), regs.begin() + o.size());
      l.ptx("wgmma.fence.sync.aligned;");
      Value vTile = l.add(l.index(valueBytes), l.mul(stage, l.index(cfg.tileBytes())));
      for (int64_t kk = 0; kk < kKeys / 16; ++kk) {
        ArrayRef<Value> a(regs.begin() + o.size() + 4 * kk, 4);
        Value descV = l.wgmmaDescriptor(sharedAddress(l, l.add(vTile, l.index(kk * 2048))),
                                        kKeys * 128, 1024);
        acc = l.wgmmaRegisterA(d, cfg.element, a, descV, acc, /*transposeB=*/true);
      }
      l.ptx("wgmma.commit_group.sync.aligned;");
      return acc;
    };
    auto valuesMmaSync = [&](GpuBuilder &l, Value stage, ArrayRef<Value> pRegs,
                             MutableArrayRef<Value> o) {
      for (int64_t kk = 0; kk < 4; ++kk) {
        SmallVector<Value, 4> pFrag(pRegs.begin() + 4 * kk, pRegs.begin() + 4 * kk + 4);
        Value key = l.add(l.index(kk * 16),
                          l.add(l.rem(l.laneId(), l.index(8)),
                                l.mul(l.rem(l.div(l.laneId(), l.index(8)), l.index(2)),
                                      l.index(8))));
        for (int64_t dp = 0; dp < d / 16; ++dp) {
          Value col = l.add(l.index(dp * 16), l.mul(l.div(l.laneId(), l.index(16)), l.index(8)));
          SmallVector<Value, 4> bFrag =
              l.ldmatrix(valueTiles, {stage, key, swizzledColumn(l, key, col)}, 4, true);
          SmallVector<Value, 4> lo(o.begin() + (2 * dp) * 4, o.begin() + (2 * dp) * 4 + 4);
          SmallVector<Value, 4> hi(o.begin() + (2 * dp + 1) * 4, o.begin() + (2 * dp + 1) * 4 + 4);
          lo = l.mma16816(pFrag, {bFrag[0], bFrag[1]}, lo, cfg.element);
          hi = l.mma16816(pFrag, {bFrag[2], bFrag[3]}, hi, cfg.element);
          std::copy(lo.begin(), lo.end(), o.begin() + (2 * dp) * 4);
          std::copy(hi.begin(), hi.end(), o.begin() + (2 * dp + 1) * 4);
        }
      }
    };
    // wgmma consumers: wait until the stages of `tiles` ((ring, tile) pairs)
    // are full (TMA wrote them through the async proxy the tensor cores read
    // through: no proxy fence); release a stage once this warp's products
    // that read it are done (lane 0 arrives for the warp).
    auto waitTiles = [&](GpuBuilder &l, ArrayRef<std::pair<int64_t, Value>> tiles) {
      for (auto [ring, tile] : tiles)
        l.mbarrierWait(ringBarrier(l, false, ring, tile), phaseParity(l, tile, /*flip=*/false));
    };
    // Paired, the stage is released in the other block too: its producer
    // refills it in both.
    Value peer = wgmma ? gb.toI32(gb.sub(gb.index(1), clusterRank)) : Value();
    auto release = [&](GpuBuilder &l, int64_t ring, Value tile) {
      Value empty = ringBarrier(l, true, ring, tile);
      Value lane0 = l.cmp(CmpIPredicate::eq, l.laneId(), l.index(0));
      l.mbarrierArriveIf(empty, lane0);
      if (cfg.pairs())
        l.mbarrierArriveInClusterIf(empty, peer, l.andI(lane0, paired));
    };

    // O (D/8 n-tiles x 4) and the m and l of the two rows, after the walk.
    SmallVector<Value> o(oTiles * 4);
    Value m[2], lSum[2];
    if (wgmma) {
      // Software pipeline (FlashAttention-3's intra-warpgroup overlap): in
      // iteration j the tensor cores run S_j = Q K_j^T and then
      // O += P_{j-1} V_{j-1} while the warps wait only for S_j and run the
      // softmax of tile j under P V. The producer warpgroup fills the K and V
      // rings ahead; a K stage is released once S has read it, a V stage
      // once P V has.
      //
      // The two consumer warpgroups run the same walk and take turns on the
      // tensor cores (FlashAttention-3's ping-pong): a warpgroup issues its
      // products only in its turn (named barrier 2 + wg, which the other
      // warpgroup's 128 threads arrive at) and hands the turn over once they
      // are issued. So one's softmax always runs under the other's products
      // (and its own P V), however the walks drift. Both take n + 1 turns
      // for n tiles; warpgroup 1 hands warpgroup 0 the first turn and keeps
      // its last.
      auto takeTurn = [&](GpuBuilder &g, int wg) {
        g.ptx("bar.sync " + std::to_string(2 + wg) + ", " + std::to_string(kThreads) + ";");
      };
      auto passTurn = [&](GpuBuilder &g, int wg) {
        g.ptx("bar.arrive " + std::to_string(3 - wg) + ", " + std::to_string(kThreads) + ";");
      };
      // S_0, waited for.
      auto firstScores = [&](GpuBuilder &g, int wg) {
        Value first = g.index(0);
        waitTiles(g, {{0, first}});
        if (wg == 1)
          passTurn(g, 1);
        takeTurn(g, wg);
        SmallVector<Value> s0 = issueScores(g, stageOf(g, first));
        passTurn(g, wg);
        g.ptx("wgmma.wait_group.sync.aligned 0;");
        s0 = g.fenceOperands(s0);
        release(g, 0, first);
        return s0;
      };
      auto walk = [&](GpuBuilder &g, int wg) -> SmallVector<Value> {
        Value one = g.index(1);
        SmallVector<Value> s0 = firstScores(g, wg);
        Value negInf[2] = {g.negInf(f32), g.negInf(f32)}, zero[2] = {g.f32(0.0f), g.f32(0.0f)};
        SoftmaxStep first =
            softmaxTile(g, g.index(0), anyTile, s0, negInf, zero, /*speculate=*/false);

        SmallVector<Value> init(oTiles * 4, g.f32(0.0f));
        init.append({first.m[0], first.m[1], first.l[0], first.l[1]});
        init.append(first.pRegs.begin(), first.pRegs.end());
        const size_t pAt = oTiles * 4 + 4;
        SmallVector<Value> state = g.loop(
            one, walkTiles, one, init, [&](GpuBuilder &l, Value tile, ValueRange iters) {
              Value prev = l.sub(tile, l.index(1));
              waitTiles(l, {{0, tile}, {1, prev}});
              takeTurn(l, wg);
              SmallVector<Value> scores = issueScores(l, stageOf(l, tile));
              SmallVector<Value> pPrev(iters.begin() + pAt, iters.end());
              SmallVector<Value> oIn(iters.begin(), iters.begin() + oTiles * 4);
              SmallVector<Value> oAcc = issueValues(l, stageOf(l, prev), pPrev, oIn);
              passTurn(l, wg);
              l.ptx("wgmma.wait_group.sync.aligned 1;"); // S_j is done; P V runs on
              scores = l.fenceOperands(scores);
              release(l, 0, tile);
              Value mOld[2] = {iters[oTiles * 4], iters[oTiles * 4 + 1]};
              Value lOld[2] = {iters[oTiles * 4 + 2], iters[oTiles * 4 + 3]};
              SoftmaxStep step = softmaxTile(l, tile, l.boolean(true), scores, mOld, lOld,
                                           /*speculate=*/true);
              l.ptx("wgmma.wait_group.sync.aligned 0;");
              // P_{j-1} is fenced with O: its registers stay untouched until
              // the product that reads them is done.
              SmallVector<Value> done(oAcc.begin(), oAcc.end());
              done.append(pPrev.begin(), pPrev.end());
              done = l.fenceOperands(done);
              release(l, 1, prev);
              SmallVector<Value> oNext(done.begin(), done.begin() + oTiles * 4);
              rescale(l, oNext, step);

              oNext.append({step.m[0], step.m[1], step.l[0], step.l[1]});
              oNext.append(step.pRegs.begin(), step.pRegs.end());
              return oNext;
            });
        // The last tile's P V (over zeros when there was no tile).
        Value lastTile = g.sub(walkTiles, one);
        waitTiles(g, {{1, lastTile}});
        SmallVector<Value> pLast(state.begin() + pAt, state.end());
        SmallVector<Value> oLast(state.begin(), state.begin() + oTiles * 4);
        takeTurn(g, wg);
        SmallVector<Value> oAcc = issueValues(g, stageOf(g, lastTile), pLast, oLast);
        if (wg == 0)
          passTurn(g, wg);
        g.ptx("wgmma.wait_group.sync.aligned 0;");
        oAcc.append(pLast.begin(), pLast.end());
        oAcc = g.fenceOperands(oAcc);
        release(g, 1, lastTile);
        SmallVector<Value> result(oAcc.begin(), oAcc.begin() + oTiles * 4);
        result.append({state[oTiles * 4], state[oTiles * 4 + 1], state[oTiles * 4 + 2],
                       state[oTiles * 4 + 3]});
        return result;
      };
      SmallVector<Type> resultTypes(oTiles * 4 + 4, f32);
      SmallVector<Value> result =
          gb.when(gb.cmp(CmpIPredicate::eq, warpgroupRows, gb.index(1)), resultTypes,
                  [&](GpuBuilder &g) { return walk(g, 1); },
                  [&](GpuBuilder &g) { return walk(g, 0); });
      std::copy(result.begin(), result.begin() + oTiles * 4, o.begin());
      m[0] = result[oTiles * 4], m[1] = result[oTiles * 4 + 1];
      lSum[0] = result[oTiles * 4 + 2], lSum[1] = result[oTiles * 4 + 3];
    } else {
      // One tile per iteration, the next one's copies in flight.
      SmallVector<Value> init(oTiles * 4, gb.f32(0.0f));
      init.append({gb.negInf(f32), gb.negInf(f32), gb.f32(0.0f), gb.f32(0.0f)});
      SmallVector<Value> state = gb.loop(
          gb.index(0), numTiles, gb.index(1), init,
          [&](GpuBuilder &l, Value tile, ValueRange iters) {
            Value stage = l.rem(tile, l.index(2));
            Value next = l.add(tile, l.index(1));
            Value hasNext = l.cmp(CmpIPredicate::ult, next, numTiles);
            SmallVector<Value> copies;
            issueTile(l, l.select(hasNext, next, tile), hasNext, l.sub(l.index(1), stage), copies);
            l.commitGroup(copies);
            l.waitGroups(1);
            l.barrier();
            SmallVector<Value> scores = scoresMmaSync(l, stage);
            Value mOld[2] = {iters[oTiles * 4], iters[oTiles * 4 + 1]};
            Value lOld[2] = {iters[oTiles * 4 + 2], iters[oTiles * 4 + 3]};
            SoftmaxStep step = softmaxTile(l, tile, l.boolean(true), scores, mOld, lOld,
                                           /*speculate=*/true);
            SmallVector<Value> oNext(iters.begin(), iters.begin() + oTiles * 4);
            rescale(l, oNext, step);
            valuesMmaSync(l, stage, step.pRegs, oNext);
            l.barrier(); // everyone is done with this stage before it is refilled
            oNext.append({step.m[0], step.m[1], step.l[0], step.l[1]});
            return oNext;
          });
      std::copy(state.begin(), state.begin() + oTiles * 4, o.begin());
      m[0] = state[oTiles * 4], m[1] = state[oTiles * 4 + 1];
      lSum[0] = state[oTiles * 4 + 2], lSum[1] = state[oTiles * 4 + 3];
    }

    // Epilogue: O / l, written per row; a row that saw no key gets zeros.
    // With a split workspace, O / l and the log-sum-exp of this split go to
    // the workspace in f32 for the combine kernel.
    for (int half = 0; half < 2; ++half) {
      Value row = half == 0 ? rowLo : rowHi;
      Value mRow = m[half];
      Value l = gb.warpSum(lSum[half], {1, 2});
      Value seen = gb.cmpF(CmpFPredicate::OGT, l, gb.f32(0.0f));
      Value inv = gb.select(seen, gb.divF(gb.f32(1.0f), l), gb.f32(0.0f));
      gb.when(gb.cmp(CmpIPredicate::ult, row, rows), [&](GpuBuilder &w) {
        Value t = w.div(row, w.index(s));
        Value h = w.add(w.mul(e, w.index(s)), w.rem(row, w.index(s)));
        auto pairType = VectorType::get({2}, cfg.element);
        auto f32x2 = VectorType::get({2}, f32);
        for (int64_t dn = 0; dn < oTiles; ++dn) {
          Value x = w.add(w.index(dn * 8), w.mul(quadCol, w.index(2)));
          Value pair = vector::FromElementsOp::create(
              w.builder(), w.location(), f32x2,
              ValueRange{w.mulF(o[dn * 4 + 2 * half], inv),
                         w.mulF(o[dn * 4 + 2 * half + 1], inv)});
          if (cfg.split)
            w.storeVector(pair, partialOut, {split, b, t, h, x}, 8);
          else
            w.storeVector(w.truncF(pair, pairType), out, {b, t, h, x}, 4);
        }
        if (cfg.split) {
          w.when(w.cmp(CmpIPredicate::eq, quadCol, w.index(0)), [&](GpuBuilder &wl) {
            Value value = wl.mulF(wl.addF(mRow, wl.log2(l)), wl.f32(float(kLn2)));
            wl.store(wl.select(seen, value, wl.negInf(f32)), partialLse, {split, b, h, t});
          });
        } else if (lse) {
          w.when(w.cmp(CmpIPredicate::eq, quadCol, w.index(0)), [&](GpuBuilder &wl) {
            Value value = wl.mulF(wl.addF(mRow, wl.log2(l)), wl.f32(float(kLn2)));
            wl.store(wl.select(seen, value, wl.negInf(f32)), lse, {b, h, t});
          });
        }
      });
    }
    if (roles) {
      gb.builder().setInsertionPointAfter(roles);
      // Neither block of a pair leaves while the other may still signal its
      // barriers.
      if (cfg.pairs())
        meetCluster(gb, /*orBlock=*/false);
    }
  };
  if (!cfg.split)
    return Plans{std::move(plan)};
  return Plans{std::move(plan), planCombinePartials(cfg, op, host)};
}
