//===- SelectionKernels.cpp - scores, thresholds, unions, tables (GPU) ----===//
//
// block_scores       one block per (query block, head, sequence): Q rows in
//                    registers, 64 pooled keys per step through shared
//                    memory, S = Q K^T on the tensor cores (mma.sync), then a
//                    column log-sum-exp over the query block's valid rows.
// select_blocks      one block per row: row max, threshold, mask bytes.
// block_union        one block per (group, sequence): OR of the group's mask
//                    rows into union words, then the table.
// select_union       clear words | threshold rows, atomicOr into the words |
// score_select_union table from the words. The union words live in the head
//                    of each table row until the table is written over them,
//                    so neither the mask nor the scores reach memory.
//
//===----------------------------------------------------------------------===//

#include "KernelPlan.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cmath>

using namespace mlir;
using namespace mlir::compact;
using namespace mlir::compact::gpu_lowering;
using arith::CmpFPredicate;
using arith::CmpIPredicate;

namespace {

constexpr int64_t kTableThreads = 256;
constexpr int64_t kSelectThreads = 256;
/// Pooled keys scored per step of the score kernel.
constexpr int64_t kScoreColumns = 64;
constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;

/// Bits [lo, hi) of a 32-bit word (0 <= lo, hi <= 32), as i32.
Value bitRange(GpuBuilder &gb, Value lo, Value hi) {
  Type i32 = gb.builder().getI32Type();
  auto onesBelow = [&](Value n) {
    // n == 32 ? ~0 : (1 << n) - 1
    Value n32 = gb.toI32(n);
    Value shifted = arith::ShLIOp::create(gb.builder(), gb.location(), gb.i32(1), n32);
    Value mask = arith::SubIOp::create(gb.builder(), gb.location(), shifted, gb.i32(1));
    return gb.select(gb.cmp(CmpIPredicate::uge, n, gb.index(32)), gb.i32(-1), mask);
  };
  Value high = onesBelow(hi), low = onesBelow(lo);
  Value bits = arith::AndIOp::create(
      gb.builder(), gb.location(), high,
      arith::XOrIOp::create(gb.builder(), gb.location(), low, gb.i32(-1)));
  (void)i32;
  return gb.select(gb.cmp(CmpIPredicate::ult, lo, hi), bits, gb.i32(0));
}

/// Exclusive prefix sum of one index per thread over the block, and the total.
/// `scratch` holds one i32 per warp.
std::pair<Value, Value> blockExclusiveScan(GpuBuilder &gb, Value value, Value scratch,
                                           int64_t threads) {
  const int64_t warps = threads / 32;
  Value lane = gb.laneId(), warp = gb.warpId();
  Value inclusive = gb.toI32(value);
  for (int32_t d = 1; d < 32; d *= 2) {
    Value up = gb.shuffleUp(inclusive, d);
    Value take = gb.cmp(CmpIPredicate::uge, lane, gb.index(d));
    inclusive = gb.select(take, arith::AddIOp::create(gb.builder(), gb.location(), inclusive, up),
                          inclusive);
  }
  gb.when(gb.cmp(CmpIPredicate::eq, lane, gb.index(31)),
          [&](GpuBuilder &g) { g.store(inclusive, scratch, {warp}); });
  gb.barrier();
  Value before = gb.i32(0), total = gb.i32(0);
  for (int64_t w = 0; w < warps; ++w) {
    Value t = gb.load(scratch, {gb.index(w)});
    Value earlier = gb.cmp(CmpIPredicate::ugt, warp, gb.index(w));
    before = arith::AddIOp::create(gb.builder(), gb.location(), before,
                                   gb.select(earlier, t, gb.i32(0)));
    total = arith::AddIOp::create(gb.builder(), gb.location(), total, t);
  }
  gb.barrier();
  Value exclusive = arith::SubIOp::create(
      gb.builder(), gb.location(),
      arith::AddIOp::create(gb.builder(), gb.location(), before, inclusive), gb.toI32(value));
  return {gb.toIndex(exclusive), gb.toIndex(total)};
}

Value sharedI32(GpuBuilder &gb, Value shared, int64_t byteOffset, Value count) {
  auto type = MemRefType::get({ShapedType::kDynamic}, gb.builder().getI32Type(),
                              MemRefLayoutAttrInterface(),
                              cast<MemRefType>(shared.getType()).getMemorySpace());
  return memref::ViewOp::create(gb.builder(), gb.location(), type, shared,
                                gb.index(byteOffset), ValueRange{count});
}

/// The selection bound of a row given its max (see compact.select_blocks).
Value selectionBound(GpuBuilder &gb, const SelectionArgs &rule, Value rowMax) {
  switch (rule.mode) {
  case ThresholdMode::RowMaxLog:
    return gb.addF(rowMax, rule.threshold);
  case ThresholdMode::RowMax:
    return gb.mulF(rule.threshold, rowMax);
  case ThresholdMode::Absolute:
    return rule.threshold;
  }
  return rule.threshold;
}

} // namespace

float SelectionRule::thresholdArgument() const {
  return mode == ThresholdMode::RowMaxLog ? std::log(threshold) : threshold;
}

void SelectionRule::appendArgs(LoopBuilder &host, KernelPlan &plan) const {
  plan.args.push_back({"threshold", host.f32(thresholdArgument())});
  plan.args.push_back({"sink", host.index(sink)});
  plan.args.push_back({"window", host.index(window)});
}

Value gpu_lowering::blockMax(GpuBuilder &gb, Value value, Value scratch, int64_t threads) {
  const int64_t warps = threads / 32;
  Value m = gb.warpMax(value, {16, 8, 4, 2, 1});
  gb.when(gb.cmp(CmpIPredicate::eq, gb.laneId(), gb.index(0)),
          [&](GpuBuilder &g) { g.store(m, scratch, {g.warpId()}); });
  gb.barrier();
  Value result = gb.load(scratch, {gb.index(0)});
  for (int64_t w = 1; w < warps; ++w)
    result = arith::MaxNumFOp::create(gb.builder(), gb.location(), result,
                                      gb.load(scratch, {gb.index(w)}));
  gb.barrier();
  return result;
}

void gpu_lowering::emitSelectRow(
    GpuBuilder &gb, const SeqGeometryIR &g, Value qb, Value kbCap, const SelectionArgs &rule,
    Value scratch, int64_t threads, function_ref<Value(GpuBuilder &, Value kb)> score,
    function_ref<void(GpuBuilder &, Value, Value, Value, Value)> emitWord) {
  Type f32 = gb.builder().getF32Type();
  Value last = g.lastVisibleBlock(gb, qb);
  Value end = gb.min(gb.add(last, gb.index(1)), kbCap);
  // The row max over the causally valid blocks (NaN-free max, as the
  // reference's std::max).
  Value local = gb.loop(gb.threadId(), end, gb.index(threads), {gb.negInf(f32)},
                        [&](GpuBuilder &l, Value kb, ValueRange m) {
                          return SmallVector<Value>{arith::MaxNumFOp::create(
                              l.builder(), l.location(), m[0], score(l, kb))};
                        })[0];
  Value rowMax = blockMax(gb, local, scratch, threads);
  Value bound = selectionBound(gb, rule, rowMax);
  Value rounds = gb.ceilDiv(kbCap, gb.index(threads));
  gb.loop(gb.index(0), rounds, gb.index(1), [&](GpuBuilder &l, Value round) {
    Value kb = l.add(l.mul(round, l.index(threads)), l.threadId());
    Value inRow = l.cmp(CmpIPredicate::ult, kb, end);
    Value s = score(l, l.min(kb, l.sub(end, l.index(1))));
    Value passes = l.andI(l.cmpF(CmpFPredicate::OGE, s, bound),
                          l.cmpF(CmpFPredicate::UNE, s, l.negInf(f32)));
    Value inSink = l.cmp(CmpIPredicate::ult, kb, rule.sink);
    Value inWindow = l.cmp(CmpIPredicate::ugt, l.add(kb, rule.window), last);
    Value keep = l.andI(inRow, l.orI(passes, l.orI(inSink, inWindow)));
    Value word = l.ballot(keep);
    Value wordIndex = l.div(l.add(l.mul(round, l.index(threads)), l.mul(l.warpId(), l.index(32))),
                            l.index(32));
    emitWord(l, wordIndex, word, keep, kb);
  });
}

void gpu_lowering::emitTableFromSharedWords(GpuBuilder &gb, const SeqGeometryIR &g, Value words,
                                            Value scanScratch, Value table, Value counts,
                                            Value b, Value e, Value kbCap) {
  const int64_t threads = kTableThreads;
  Value nWords = gb.ceilDiv(kbCap, gb.index(32));
  // The chunk's own blocks are always in.
  gb.loop(gb.threadId(), nWords, gb.index(threads), [&](GpuBuilder &l, Value w) {
    Value lo = l.mul(w, l.index(32));
    auto clampToWord = [&](Value kb) {
      Value rel = l.select(l.cmp(CmpIPredicate::ugt, kb, lo), l.sub(kb, lo), l.index(0));
      return l.min(rel, l.index(32));
    };
    // Blocks past the table's capacity (a context longer than the table:
    // bad input) are never added, so no write lands outside the row.
    Value bits = bitRange(l, clampToWord(g.firstChunkBlock),
                          clampToWord(l.min(g.numBlocks, kbCap)));
    l.store(l.orI(l.load(words, {w}), bits), words, {w});
  });
  gb.barrier();
  // One word per thread per round: the exclusive prefix of the words' counts
  // says where the word's blocks go.
  Value rounds = gb.ceilDiv(nWords, gb.index(threads));
  Value total = gb.loop(gb.index(0), rounds, gb.index(1), {gb.index(0)},
                        [&](GpuBuilder &l, Value round, ValueRange running) {
                          Value w = l.add(l.mul(round, l.index(threads)), l.threadId());
                          Value inRange = l.cmp(CmpIPredicate::ult, w, nWords);
                          Value word = l.select(inRange, l.load(words, {l.min(w, l.sub(nWords, l.index(1)))}),
                                                l.i32(0));
                          Value count = l.toIndex(math::CtPopOp::create(l.builder(), l.location(), word));
                          auto [before, roundTotal] =
                              blockExclusiveScan(l, count, scanScratch, threads);
                          Value start = l.add(running[0], before);
                          l.loop(l.index(0), l.index(32), l.index(1), {start},
                                 [&](GpuBuilder &lb, Value bit, ValueRange pos) {
                                   Value shifted = arith::ShRUIOp::create(
                                       lb.builder(), lb.location(), word, lb.toI32(bit));
                                   Value set = lb.cmp(
                                       CmpIPredicate::ne,
                                       arith::AndIOp::create(lb.builder(), lb.location(), shifted,
                                                             lb.i32(1)),
                                       lb.i32(0));
                                   lb.when(set, [&](GpuBuilder &ls) {
                                     Value kb = ls.add(ls.mul(w, ls.index(32)), bit);
                                     ls.store(ls.toI32(kb), table, {b, e, pos[0]});
                                   });
                                   return SmallVector<Value>{
                                       lb.add(pos[0], lb.select(set, lb.index(1), lb.index(0)))};
                                 });
                          return SmallVector<Value>{l.add(running[0], roundTotal)};
                        })[0];
  gb.when(gb.cmp(CmpIPredicate::eq, gb.threadId(), gb.index(0)),
          [&](GpuBuilder &l) { l.store(l.toI32(total), counts, {b, e}); });
  gb.loop(gb.add(total, gb.threadId()), kbCap, gb.index(threads),
          [&](GpuBuilder &l, Value i) { l.store(l.i32(-1), table, {b, e, i}); });
}

//===----------------------------------------------------------------------===//
// Table kernels
//===----------------------------------------------------------------------===//

namespace {
/// Shared memory of the table kernels: 8 x i32 scan scratch, then the words.
constexpr int64_t kWordsOffset = 64;

} // namespace

KernelPlan gpu_lowering::planClearUnionWords(LoopBuilder &host, Value table) {
  KernelPlan plan;
  plan.role = "clear";
  plan.args = {{"table", table}};
  plan.grid = {host.dim(table, 1), host.dim(table, 0), host.index(1)};
  plan.block = {128, 1, 1};
  plan.gridRule = "[E, B, 1]";
  plan.body = [](GpuBuilder &gb, ValueRange args, Value) {
    Value table = args[0];
    Value e = gb.blockId(gpu::Dimension::x), b = gb.blockId(gpu::Dimension::y);
    Value nWords = gb.ceilDiv(gb.dim(table, 2), gb.index(32));
    gb.loop(gb.threadId(), nWords, gb.index(128),
            [&](GpuBuilder &l, Value w) { l.store(l.i32(0), table, {b, e, w}); });
  };
  return plan;
}

KernelPlan gpu_lowering::planTableFromWords(LoopBuilder &host, Value ctxLens, Value chunkLen,
                                            int64_t blockSize, Value table, Value counts) {
  KernelPlan plan;
  plan.role = "table";
  plan.args = {{"ctx_lens", ctxLens}, {"chunk_len", chunkLen}, {"table", table},
               {"counts", counts}};
  plan.grid = {host.dim(table, 1), host.dim(table, 0), host.index(1)};
  plan.block = {kTableThreads, 1, 1};
  plan.shared = {kWordsOffset, 0, 4};
  plan.blockCapacity = host.dim(table, 2);
  plan.gridRule = "[E, B, 1]";
  plan.body = [=](GpuBuilder &gb, ValueRange args, Value shared) {
    Value ctxLens = args[0], chunkLen = args[1], table = args[2], counts = args[3];
    Value e = gb.blockId(gpu::Dimension::x), b = gb.blockId(gpu::Dimension::y);
    Value kbCap = gb.dim(table, 2), nWords = gb.ceilDiv(kbCap, gb.index(32));
    SeqGeometryIR g = SeqGeometryIR::build(gb, gb.toIndex(gb.load(ctxLens, {b})), chunkLen,
                                           blockSize);
    Value scan = sharedI32(gb, shared, 0, gb.index(8));
    Value words = sharedI32(gb, shared, kWordsOffset, nWords);
    gb.loop(gb.threadId(), nWords, gb.index(kTableThreads), [&](GpuBuilder &l, Value w) {
      l.store(l.load(table, {b, e, w}), words, {w});
    });
    gb.barrier();
    emitTableFromSharedWords(gb, g, words, scan, table, counts, b, e, kbCap);
  };
  return plan;
}

FailureOr<Plans> gpu_lowering::planBlockUnion(BlockUnionOp op, LoopBuilder &host) {
  const int64_t bs = op.getBlockSize(), s = op.getExecGroupSize();
  KernelPlan plan;
  plan.role = "union";
  plan.args = {{"mask", op.getMask()},
               {"ctx_lens", op.getCtxLens()},
               {"chunk_len", op.getChunkLen()},
               {"table", op.getTable()},
               {"counts", op.getCounts()}};
  plan.grid = {host.dim(op.getTable(), 1), host.dim(op.getTable(), 0), host.index(1)};
  plan.block = {kTableThreads, 1, 1};
  plan.shared = {kWordsOffset, 0, 4};
  plan.blockCapacity = host.dim(op.getTable(), 2);
  plan.gridRule = "[E, B, 1]";
  plan.body = [=](GpuBuilder &gb, ValueRange args, Value shared) {
    Value mask = args[0], ctxLens = args[1], chunkLen = args[2], table = args[3];
    Value counts = args[4];
    Value e = gb.blockId(gpu::Dimension::x), b = gb.blockId(gpu::Dimension::y);
    Value kbCap = gb.dim(table, 2), nWords = gb.ceilDiv(kbCap, gb.index(32));
    Value queryBlocks = gb.dim(mask, 2);
    SeqGeometryIR g = SeqGeometryIR::build(gb, gb.toIndex(gb.load(ctxLens, {b})), chunkLen, bs);
    Value scan = sharedI32(gb, shared, 0, gb.index(8));
    Value words = sharedI32(gb, shared, kWordsOffset, nWords);
    // One kb per thread per round: OR over the group's heads and query blocks
    // (causally valid pairs only), then one ballot per warp gives a word.
    Value rounds = gb.ceilDiv(kbCap, gb.index(kTableThreads));
    gb.loop(gb.index(0), rounds, gb.index(1), [&](GpuBuilder &l, Value round) {
      Value kb = l.add(l.mul(round, l.index(kTableThreads)), l.threadId());
      Value inCap = l.cmp(CmpIPredicate::ult, kb, kbCap);
      Value kbRead = l.min(kb, l.sub(kbCap, l.index(1)));
      Value firstHead = l.mul(e, l.index(s));
      Value any = l.loop(
          firstHead, l.add(firstHead, l.index(s)), l.index(1),
          {l.cmp(CmpIPredicate::ne, l.index(0), l.index(0))},
          [&](GpuBuilder &lh, Value h, ValueRange acc) {
            return lh.loop(lh.index(0), queryBlocks, lh.index(1), {acc[0]},
                           [&](GpuBuilder &lq, Value qb, ValueRange inner) {
                             Value valid = lq.andI(inCap, lq.cmp(CmpIPredicate::ule, kb,
                                                                g.lastVisibleBlock(lq, qb)));
                             Value m = lq.load(mask, {b, h, qb, kbRead});
                             Value set = lq.andI(valid, lq.cmp(CmpIPredicate::ne, m, lq.i8(0)));
                             return SmallVector<Value>{lq.orI(inner[0], set)};
                           });
          })[0];
      Value word = l.ballot(any);
      Value w = l.div(kb, l.index(32));
      l.when(l.andI(l.cmp(CmpIPredicate::eq, l.laneId(), l.index(0)),
                    l.cmp(CmpIPredicate::ult, w, nWords)),
             [&](GpuBuilder &lw) { lw.store(word, words, {w}); });
    });
    gb.barrier();
    emitTableFromSharedWords(gb, g, words, scan, table, counts, b, e, kbCap);
  };
  return Plans{std::move(plan)};
}

//===----------------------------------------------------------------------===//
// Thresholding kernels
//===----------------------------------------------------------------------===//

namespace {
/// A block per (query block, head, sequence) thresholding a score row held in
/// global memory; `emitWord` takes the decisions.
/// Arguments: scores, ctx_lens, chunk_len, the output, threshold, sink, window.
KernelPlan planThresholdRows(
    LoopBuilder &host, StringRef role, Value scores, Value ctxLens, Value chunkLen,
    std::pair<std::string, Value> output, int64_t blockSize, SelectionRule rule,
    std::function<void(GpuBuilder &, ValueRange args, Value b, Value h, Value qb, Value wordIndex,
                       Value word, Value bit, Value kb)>
        emitWord) {
  KernelPlan plan;
  plan.role = role.str();
  plan.args = {{"scores", scores}, {"ctx_lens", ctxLens}, {"chunk_len", chunkLen}, output};
  rule.appendArgs(host, plan);
  plan.grid = {host.dim(scores, 2), host.dim(scores, 1), host.dim(scores, 0)};
  plan.block = {kSelectThreads, 1, 1};
  plan.shared.fixed = 128;
  plan.gridRule = "[Qb, Hq, B]";
  const ThresholdMode mode = rule.mode;
  plan.body = [=](GpuBuilder &gb, ValueRange args, Value shared) {
    Value scores = args[0], ctxLens = args[1], chunkLen = args[2];
    SelectionArgs selection{mode, args[4], args[5], args[6]};
    Value qb = gb.blockId(gpu::Dimension::x), h = gb.blockId(gpu::Dimension::y);
    Value b = gb.blockId(gpu::Dimension::z);
    Value scratch = gb.sharedView(shared, 0, {32}, gb.builder().getF32Type());
    SeqGeometryIR g =
        SeqGeometryIR::build(gb, gb.toIndex(gb.load(ctxLens, {b})), chunkLen, blockSize);
    emitSelectRow(
        gb, g, qb, gb.dim(scores, 3), selection, scratch, kSelectThreads,
        [&](GpuBuilder &l, Value kb) { return l.load(scores, {b, h, qb, kb}); },
        [&](GpuBuilder &l, Value wordIndex, Value word, Value bit, Value kb) {
          emitWord(l, args, b, h, qb, wordIndex, word, bit, kb);
        });
  };
  return plan;
}

/// lane 0 of each warp ORs a non-zero word into the group's union words.
void orWordIntoTable(GpuBuilder &gb, Value table, Value b, Value e, Value wordIndex,
                     Value word) {
  Value first = gb.cmp(CmpIPredicate::eq, gb.laneId(), gb.index(0));
  Value nonZero = gb.cmp(CmpIPredicate::ne, word, gb.i32(0));
  Value inRange = gb.cmp(CmpIPredicate::ult, wordIndex,
                         gb.ceilDiv(gb.dim(table, 2), gb.index(32)));
  gb.when(gb.andI(first, gb.andI(nonZero, inRange)),
          [&](GpuBuilder &l) { l.atomicOr(word, table, {b, e, wordIndex}); });
}
} // namespace

FailureOr<Plans> gpu_lowering::planSelectBlocks(SelectBlocksOp op, LoopBuilder &host) {
  KernelPlan plan = planThresholdRows(
      host, "select", op.getScores(), op.getCtxLens(), op.getChunkLen(), {"mask", op.getMask()},
      op.getBlockSize(), SelectionRule::of(op),
      [](GpuBuilder &gb, ValueRange args, Value b, Value h, Value qb, Value, Value, Value bit,
         Value kb) {
        Value mask = args[3];
        gb.when(gb.cmp(CmpIPredicate::ult, kb, gb.dim(mask, 3)), [&](GpuBuilder &l) {
          Value byte = arith::ExtUIOp::create(l.builder(), l.location(), l.builder().getI8Type(),
                                              bit);
          l.store(byte, mask, {b, h, qb, kb});
        });
      });
  return Plans{std::move(plan)};
}

FailureOr<Plans> gpu_lowering::planSelectUnion(SelectUnionOp op, LoopBuilder &host) {
  const int64_t s = op.getExecGroupSize();
  Plans plans;
  plans.push_back(planClearUnionWords(host, op.getTable()));
  plans.push_back(planThresholdRows(
      host, "select", op.getScores(), op.getCtxLens(), op.getChunkLen(),
      {"table", op.getTable()}, op.getBlockSize(), SelectionRule::of(op),
      [s](GpuBuilder &gb, ValueRange args, Value b, Value h, Value, Value wordIndex, Value word,
          Value, Value) {
        orWordIntoTable(gb, args[3], b, gb.div(h, gb.index(s)), wordIndex, word);
      }));
  plans.push_back(planTableFromWords(host, op.getCtxLens(), op.getChunkLen(), op.getBlockSize(),
                                     op.getTable(), op.getCounts()));
  return plans;
}

//===----------------------------------------------------------------------===//
// Score kernels (tensor cores)
//===----------------------------------------------------------------------===//

namespace {

/// Shared memory of the score kernels (bytes): scratch, Q tile, pooled-key
/// tile, the warps' column partials (max and sum), then (fused) the row.
struct ScoreLayout {
  int64_t rows, headDim, warps;
  int64_t scratch() const { return 0; }
  int64_t queryTile() const { return 1024; }
  /// Two stages of pooled keys: the next tile loads while this one is scored.
  int64_t keyTiles() const { return queryTile() + rows * headDim * 2; }
  int64_t partialMax() const { return keyTiles() + 2 * kScoreColumns * headDim * 2; }
  int64_t partialSum() const { return partialMax() + warps * kScoreColumns * 4; }
  int64_t row() const { return partialSum() + warps * kScoreColumns * 4; }
};

struct ScoreConfig {
  int64_t blockSize, headDim, groupSize;
  Type element;
  int64_t threads() const { return blockSize / 16 * 32; }
  ScoreLayout layout() const { return {blockSize, headDim, blockSize / 16}; }
};

LogicalResult checkScoreConfig(Operation *op, Value q, Value pooled, int64_t blockSize) {
  int64_t headDim = staticDim(q, 3);
  if (blockSize != 64 && blockSize != 128)
    return op->emitOpError() << "GPU lowering of scoring supports block_size 64 or 128, got "
                             << blockSize;
  if (headDim != 64 && headDim != 128)
    return op->emitOpError() << "GPU lowering of scoring supports head dim 64 or 128, got "
                             << headDim;
  Type element = elementType(q);
  if (!element.isBF16() && !element.isF16())
    return op->emitOpError() << "GPU lowering of scoring needs bf16 or f16 queries, got "
                             << element;
  if (elementType(pooled) != element)
    return op->emitOpError() << "GPU lowering of scoring needs 'pooled' of the queries' element "
                                "type ("
                             << element << "), got " << elementType(pooled);
  return success();
}

/// Scores row `qb` of head `h` of sequence `b` against the pooled keys
/// [0, kbEnd) (see compact.block_scores) and hands each (kb, score) to
/// `emit` (one thread per kb). All threads of the block take part.
void emitScoreRow(GpuBuilder &gb, const ScoreConfig &cfg, Value q, Value pooled, Value scale,
                  const SeqGeometryIR &g, Value shared, Value b, Value h, Value qb, Value kbEnd,
                  function_ref<void(GpuBuilder &, Value kb, Value score)> emit) {
  const ScoreLayout layout = cfg.layout();
  const int64_t rows = cfg.blockSize, d = cfg.headDim, threads = cfg.threads();
  const int64_t chunksPerRow = d / 8;
  Type f32 = gb.builder().getF32Type();
  Value queryTile = gb.sharedView(shared, layout.queryTile(), {rows, d}, cfg.element);
  Value keyTiles =
      gb.sharedView(shared, layout.keyTiles(), {2, kScoreColumns, d}, cfg.element);
  Value partialMax =
      gb.sharedView(shared, layout.partialMax(), {layout.warps, kScoreColumns}, f32);
  Value partialSum =
      gb.sharedView(shared, layout.partialSum(), {layout.warps, kScoreColumns}, f32);
  Value tid = gb.threadId(), lane = gb.laneId(), warp = gb.warpId();
  Value kv = gb.div(h, gb.index(cfg.groupSize));
  Value row0 = g.queryBlockBegin(gb, qb);

  // The query block's rows (zero beyond the chunk) into shared memory, then
  // into registers as mma A fragments: this warp's 16 rows x D.
  SmallVector<Value> tokens;
  for (int64_t i = 0; i < rows * chunksPerRow / threads; ++i) {
    Value c = gb.add(gb.index(i * threads), tid);
    Value r = gb.div(c, gb.index(chunksPerRow));
    Value x = gb.mul(gb.rem(c, gb.index(chunksPerRow)), gb.index(8));
    Value row = gb.add(row0, r);
    Value valid = gb.cmp(CmpIPredicate::ult, row, g.chunkLen);
    Value rowRead = gb.min(row, gb.sub(g.chunkLen, gb.index(1)));
    tokens.push_back(gb.copyAsync16(queryTile, {r, swizzledColumn(gb, r, x)}, q,
                                    {b, rowRead, h, x}, valid));
  }
  gb.commitGroup(tokens);
  gb.waitGroups(0);
  gb.barrier();
  SmallVector<SmallVector<Value, 4>> qFrag;
  {
    Value r = gb.add(gb.mul(warp, gb.index(16)), gb.rem(lane, gb.index(16)));
    for (int64_t ks = 0; ks < d / 16; ++ks) {
      Value col = gb.add(gb.index(ks * 16), gb.mul(gb.div(lane, gb.index(16)), gb.index(8)));
      qFrag.push_back(gb.ldmatrix(queryTile, {r, swizzledColumn(gb, r, col)}, 4, false));
    }
  }

  // Columns [0, computeEnd) are scored; beyond the context they are -inf.
  Value computeEnd = gb.min(kbEnd, g.numBlocks);
  Value tiles = gb.ceilDiv(computeEnd, gb.index(kScoreColumns));
  Value groupRow = gb.div(lane, gb.index(4)), quadCol = gb.rem(lane, gb.index(4));
  Value logitScale = gb.mulF(scale, gb.f32(float(kLog2e)));
  // Pooled keys of tile `tile` (zero where not scored) into `stage`.
  auto issueTile = [&](GpuBuilder &l, Value tile, Value want, Value stage) {
    Value kb0 = l.mul(tile, l.index(kScoreColumns));
    SmallVector<Value> keyTokens;
    for (int64_t i = 0; i < kScoreColumns * chunksPerRow / threads; ++i) {
      Value c = l.add(l.index(i * threads), l.threadId());
      Value r = l.div(c, l.index(chunksPerRow));
      Value x = l.mul(l.rem(c, l.index(chunksPerRow)), l.index(8));
      Value kb = l.add(kb0, r);
      Value valid = l.andI(want, l.cmp(CmpIPredicate::ult, kb, computeEnd));
      Value kbRead = l.min(kb, l.sub(l.max(computeEnd, l.index(1)), l.index(1)));
      keyTokens.push_back(l.copyAsync16(keyTiles, {stage, r, swizzledColumn(l, r, x)}, pooled,
                                        {b, kv, kbRead, x}, valid));
    }
    l.commitGroup(keyTokens);
  };
  issueTile(gb, gb.index(0), gb.cmp(CmpIPredicate::ugt, tiles, gb.index(0)), gb.index(0));
  gb.loop(gb.index(0), tiles, gb.index(1), [&](GpuBuilder &l, Value tile) {
    Value kb0 = l.mul(tile, l.index(kScoreColumns));
    Value stage = l.rem(tile, l.index(2));
    // Prefetch the next tile (zero-filled after the last) into the other
    // stage: its last readers passed the barrier after the previous scores.
    Value next = l.add(tile, l.index(1));
    Value hasNext = l.cmp(CmpIPredicate::ult, next, tiles);
    issueTile(l, l.select(hasNext, next, tile), hasNext, l.sub(l.index(1), stage));
    l.waitGroups(1);
    l.barrier();

    // S = Q K^T for 16 rows x 64 columns per warp: 8 n-tiles of 8 columns.
    SmallVector<SmallVector<Value, 4>> acc(8, SmallVector<Value, 4>(4, l.f32(0.0f)));
    for (int64_t ks = 0; ks < d / 16; ++ks)
      for (int64_t np = 0; np < 4; ++np) {
        Value key = l.add(l.index(np * 16),
                          l.add(l.mul(l.div(l.laneId(), l.index(16)), l.index(8)),
                                l.rem(l.laneId(), l.index(8))));
        Value col = l.add(l.index(ks * 16),
                          l.mul(l.rem(l.div(l.laneId(), l.index(8)), l.index(2)), l.index(8)));
        SmallVector<Value, 4> bFrag =
            l.ldmatrix(keyTiles, {stage, key, swizzledColumn(l, key, col)}, 4, false);
        acc[2 * np] = l.mma16816(qFrag[ks], {bFrag[0], bFrag[1]}, acc[2 * np], cfg.element);
        acc[2 * np + 1] =
            l.mma16816(qFrag[ks], {bFrag[2], bFrag[3]}, acc[2 * np + 1], cfg.element);
      }

    // Valid (row, column) pairs: the row is in the chunk and has seen block
    // kb whole. Logits in log2 units; per column, max and sum of exp2 over
    // this warp's 16 rows.
    Value rowLo = l.add(l.add(row0, l.mul(l.warpId(), l.index(16))), groupRow);
    Value rowHi = l.add(rowLo, l.index(8));
    for (int64_t nt = 0; nt < 8; ++nt)
      for (int64_t parity = 0; parity < 2; ++parity) {
        Value col = l.add(l.index(nt * 8 + parity), l.mul(quadCol, l.index(2)));
        Value kb = l.add(kb0, col);
        auto logit = [&](Value row, Value s) {
          Value valid = l.andI(l.cmp(CmpIPredicate::ult, row, g.chunkLen),
                               l.andI(l.cmp(CmpIPredicate::ult, kb, computeEnd),
                                      l.cmp(CmpIPredicate::uge, row, g.firstScoringRow(l, kb))));
          return l.select(valid, l.mulF(s, logitScale), l.negInf(f32));
        };
        Value lo = logit(rowLo, acc[nt][parity]), hi = logit(rowHi, acc[nt][parity + 2]);
        Value m = l.warpMax(l.maxF(lo, hi), {4, 8, 16});
        Value mSafe = l.select(l.cmpF(CmpFPredicate::OEQ, m, l.negInf(f32)), l.f32(0.0f), m);
        Value sum = l.addF(l.exp2(l.subF(lo, mSafe)), l.exp2(l.subF(hi, mSafe)));
        sum = l.warpSum(sum, {4, 8, 16});
        l.when(l.cmp(CmpIPredicate::ult, l.laneId(), l.index(4)), [&](GpuBuilder &lw) {
          lw.store(m, partialMax, {lw.warpId(), col});
          lw.store(sum, partialSum, {lw.warpId(), col});
        });
      }
    l.barrier();

    // Combine the warps: log-sum-exp of the whole query block, in natural
    // log units.
    l.when(l.cmp(CmpIPredicate::ult, l.threadId(), l.index(kScoreColumns)), [&](GpuBuilder &lc) {
      Value col = lc.threadId();
      Value m = lc.negInf(f32);
      for (int64_t w = 0; w < layout.warps; ++w)
        m = lc.maxF(m, lc.load(partialMax, {lc.index(w), col}));
      Value empty = lc.cmpF(CmpFPredicate::OEQ, m, lc.negInf(f32));
      Value mSafe = lc.select(empty, lc.f32(0.0f), m);
      Value sum = lc.f32(0.0f);
      for (int64_t w = 0; w < layout.warps; ++w) {
        Value wm = lc.load(partialMax, {lc.index(w), col});
        sum = lc.addF(sum, lc.mulF(lc.load(partialSum, {lc.index(w), col}),
                                   lc.exp2(lc.subF(wm, mSafe))));
      }
      Value lse = lc.mulF(lc.addF(m, lc.log2(sum)), lc.f32(float(kLn2)));
      lse = lc.select(empty, lc.negInf(f32), lse);
      Value kb = lc.add(kb0, col);
      lc.when(lc.cmp(CmpIPredicate::ult, kb, kbEnd),
              [&](GpuBuilder &le) { emit(le, kb, lse); });
    });
    l.barrier();
  });
  // Columns past the context: no query scores them.
  gb.loop(gb.add(gb.mul(tiles, gb.index(kScoreColumns)), tid), kbEnd, gb.index(threads),
          [&](GpuBuilder &l, Value kb) { emit(l, kb, l.negInf(f32)); });
}

ScoreConfig scoreConfig(Value q, Value pooled, int64_t blockSize) {
  return {blockSize, staticDim(q, 3), staticDim(q, 2) / staticDim(pooled, 1), elementType(q)};
}

} // namespace

FailureOr<Plans> gpu_lowering::planBlockScores(BlockScoresOp op, LoopBuilder &host) {
  if (failed(checkScoreConfig(op, op.getQ(), op.getPooled(), op.getBlockSize())))
    return failure();
  ScoreConfig cfg = scoreConfig(op.getQ(), op.getPooled(), op.getBlockSize());
  KernelPlan plan;
  plan.role = "scores";
  plan.args = {{"q", op.getQ()},
               {"pooled", op.getPooled()},
               {"ctx_lens", op.getCtxLens()},
               {"scores", op.getScores()},
               {"scale", host.f32(op.getEffectiveScale())}};
  plan.grid = {host.dim(op.getScores(), 2), host.index(staticDim(op.getQ(), 2)),
               host.dim(op.getQ(), 0)};
  plan.block = {cfg.threads(), 1, 1};
  plan.shared.fixed = cfg.layout().row();
  plan.gridRule = "[Qb, Hq, B]";
  plan.body = [=](GpuBuilder &gb, ValueRange args, Value shared) {
    Value q = args[0], pooled = args[1], ctxLens = args[2], scores = args[3];
    Value scale = args[4];
    Value qb = gb.blockId(gpu::Dimension::x), h = gb.blockId(gpu::Dimension::y);
    Value b = gb.blockId(gpu::Dimension::z);
    SeqGeometryIR g = SeqGeometryIR::build(gb, gb.toIndex(gb.load(ctxLens, {b})), gb.dim(q, 1),
                                           cfg.blockSize);
    emitScoreRow(gb, cfg, q, pooled, scale, g, shared, b, h, qb, gb.dim(scores, 3),
                 [&](GpuBuilder &l, Value kb, Value score) {
                   l.store(score, scores, {b, h, qb, kb});
                 });
  };
  return Plans{std::move(plan)};
}

FailureOr<Plans> gpu_lowering::planScoreSelectUnion(ScoreSelectUnionOp op, LoopBuilder &host) {
  if (failed(checkScoreConfig(op, op.getQ(), op.getPooled(), op.getBlockSize())))
    return failure();
  ScoreConfig cfg = scoreConfig(op.getQ(), op.getPooled(), op.getBlockSize());
  const int64_t s = op.getExecGroupSize();
  SelectionRule rule = SelectionRule::of(op);
  Value chunkLen = host.dim(op.getQ(), 1);
  Value kbCap = host.dim(op.getTable(), 2);
  Plans plans;
  plans.push_back(planClearUnionWords(host, op.getTable()));

  KernelPlan select;
  select.role = "select";
  select.args = {{"q", op.getQ()},
                 {"pooled", op.getPooled()},
                 {"ctx_lens", op.getCtxLens()},
                 {"table", op.getTable()},
                 {"scale", host.f32(op.getEffectiveScale())}};
  rule.appendArgs(host, select);
  const ThresholdMode mode = rule.mode;
  select.grid = {host.ceilDiv(chunkLen, host.index(cfg.blockSize)),
                 host.index(staticDim(op.getQ(), 2)), host.dim(op.getQ(), 0)};
  select.block = {cfg.threads(), 1, 1};
  select.shared = {cfg.layout().row(), 4, 0};
  select.blockCapacity = kbCap;
  select.gridRule = "[ceil(C / bs), Hq, B]";
  select.body = [=](GpuBuilder &gb, ValueRange args, Value shared) {
    Value q = args[0], pooled = args[1], ctxLens = args[2], table = args[3];
    Value scale = args[4];
    SelectionArgs selection{mode, args[5], args[6], args[7]};
    Value qb = gb.blockId(gpu::Dimension::x), h = gb.blockId(gpu::Dimension::y);
    Value b = gb.blockId(gpu::Dimension::z);
    Value kbCap = gb.dim(table, 2);
    SeqGeometryIR g = SeqGeometryIR::build(gb, gb.toIndex(gb.load(ctxLens, {b})), gb.dim(q, 1),
                                           cfg.blockSize);
    // The row of scores stays in shared memory; only causally valid blocks
    // are scored.
    auto rowType = MemRefType::get({ShapedType::kDynamic}, gb.builder().getF32Type(),
                                   MemRefLayoutAttrInterface(),
                                   cast<MemRefType>(shared.getType()).getMemorySpace());
    Value row = memref::ViewOp::create(gb.builder(), gb.location(), rowType, shared,
                                       gb.index(cfg.layout().row()), ValueRange{kbCap});
    Value end = gb.min(gb.add(g.lastVisibleBlock(gb, qb), gb.index(1)), kbCap);
    emitScoreRow(gb, cfg, q, pooled, scale, g, shared, b, h, qb, end,
                 [&](GpuBuilder &l, Value kb, Value score) { l.store(score, row, {kb}); });
    gb.barrier();
    Value scratch = gb.sharedView(shared, 0, {32}, gb.builder().getF32Type());
    Value e = gb.div(h, gb.index(s));
    emitSelectRow(
        gb, g, qb, kbCap, selection, scratch, cfg.threads(),
        [&](GpuBuilder &l, Value kb) { return l.load(row, {kb}); },
        [&](GpuBuilder &l, Value wordIndex, Value word, Value, Value) {
          orWordIntoTable(l, table, b, e, wordIndex, word);
        });
  };
  plans.push_back(std::move(select));
  plans.push_back(planTableFromWords(host, op.getCtxLens(), chunkLen, op.getBlockSize(),
                                     op.getTable(), op.getCounts()));
  return plans;
}
