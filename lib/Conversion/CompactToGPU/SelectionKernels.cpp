//===- SelectionKernels.cpp - scores, thresholds, unions, tables (GPU) ----===//
//
// block_scores       one block per (query block, head, sequence): Q rows in
//                    registers, 64 pooled keys per step through shared
//                    memory, S = Q K^T on the tensor cores (mma.sync), then a
//                    column log-sum-exp over the query block's valid rows.
// select_blocks      one block per row: row max, threshold, mask bytes.
// block_union        one block per (table row, sequence): OR of the group's
//                    mask rows (of the row's query blocks) into union words,
//                    then the table.
// choose_exec_groups one block per (KV group, table row index, sequence): the
//                    group's per-head rows as bits, the cost of every
//                    sub-group size, the chosen sub-group unions' tables.
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

void gpu_lowering::emitTableFromSharedWords(GpuBuilder &gb, Value words, Value scanScratch,
                                            Value table, Value counts, Value b, Value e,
                                            Value kbCap, Value chunkBegin, Value chunkEnd) {
  const int64_t threads = kTableThreads;
  Value nWords = gb.ceilDiv(kbCap, gb.index(32));
  // The row's chunk blocks [chunkBegin, chunkEnd) are always in.
  gb.loop(gb.threadId(), nWords, gb.index(threads), [&](GpuBuilder &l, Value w) {
    Value lo = l.mul(w, l.index(32));
    auto clampToWord = [&](Value kb) {
      Value rel = l.select(l.cmp(CmpIPredicate::ugt, kb, lo), l.sub(kb, lo), l.index(0));
      return l.min(rel, l.index(32));
    };
    // Blocks past the table's capacity (a context longer than the table:
    // bad input) are never added, so no write lands outside the row.
    Value bits = bitRange(l, clampToWord(chunkBegin),
                          clampToWord(l.min(chunkEnd, kbCap)));
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
  plan.gridRule = "[E * T, B, 1]";
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
                                            int64_t blockSize, int64_t groups, Value table,
                                            Value counts) {
  KernelPlan plan;
  plan.role = "table";
  plan.args = {{"ctx_lens", ctxLens}, {"chunk_len", chunkLen}, {"table", table},
               {"counts", counts}};
  plan.grid = {host.dim(table, 1), host.dim(table, 0), host.index(1)};
  plan.block = {kTableThreads, 1, 1};
  plan.shared = {kWordsOffset, 0, 4};
  plan.blockCapacity = host.dim(table, 2);
  plan.gridRule = "[E * T, B, 1]";
  plan.body = [=](GpuBuilder &gb, ValueRange args, Value shared) {
    Value ctxLens = args[0], chunkLen = args[1], table = args[2], counts = args[3];
    Value row = gb.blockId(gpu::Dimension::x), b = gb.blockId(gpu::Dimension::y);
    Value kbCap = gb.dim(table, 2), nWords = gb.ceilDiv(kbCap, gb.index(32));
    SeqGeometryIR g = SeqGeometryIR::build(gb, gb.toIndex(gb.load(ctxLens, {b})), chunkLen,
                                           blockSize);
    TableRowsIR rows = TableRowsIR::build(gb, gb.dim(table, 1), gb.index(groups));
    Value queryBlocks = gb.ceilDiv(chunkLen, gb.index(blockSize));
    Value scan = sharedI32(gb, shared, 0, gb.index(8));
    Value words = sharedI32(gb, shared, kWordsOffset, nWords);
    gb.loop(gb.threadId(), nWords, gb.index(kTableThreads), [&](GpuBuilder &l, Value w) {
      l.store(l.load(table, {b, row, w}), words, {w});
    });
    gb.barrier();
    emitTableFromSharedWords(gb, words, scan, table, counts, b, row, kbCap,
                             rows.chunkBlocksBegin(gb, g, row),
                             rows.chunkBlocksEnd(gb, g, row, queryBlocks));
  };
  return plan;
}

FailureOr<Plans> gpu_lowering::planChooseExecGroups(ChooseExecGroupsOp op, LoopBuilder &host) {
  const int64_t qHeads = op.getQHeads(), kvHeads = op.getKvHeads();
  const int64_t groupSize = qHeads / kvHeads;
  KernelPlan plan;
  plan.role = "choose";
  plan.args = {{"table", op.getTable()},
               {"counts", op.getCounts()},
               {"slack", host.f32(op.getSlack().convertToFloat())}};
  Value rowsPerHead = host.div(host.dim(op.getTable(), 1), host.index(qHeads));
  plan.grid = {host.max(host.mul(host.index(kvHeads), rowsPerHead), host.index(1)),
               host.dim(op.getTable(), 0), host.index(1)};
  plan.block = {kTableThreads, 1, 1};
  // The sub-group union's words, then each head's.
  plan.shared = {kWordsOffset, 0, 4 * (groupSize + 1)};
  plan.blockCapacity = host.dim(op.getTable(), 2);
  plan.gridRule = "[Hkv * T, B, 1]";
  plan.body = [=](GpuBuilder &outer, ValueRange args, Value shared) {
    Value x = outer.blockId(gpu::Dimension::x);
    Value rowsPerHead = outer.div(outer.dim(args[0], 1), outer.index(qHeads));
    // Rows past Hq * floor(rows / Hq) (a dynamic table of the wrong size) are
    // not touched; the grid has at least one block.
    Value inTable = outer.cmp(CmpIPredicate::ult, x, outer.mul(outer.index(kvHeads), rowsPerHead));
    outer.when(inTable, [&](GpuBuilder &gb) {
      Value table = args[0], counts = args[1], slack = args[2];
      Value b = gb.blockId(gpu::Dimension::y);
      Value kbCap = gb.dim(table, 2), nWords = gb.ceilDiv(kbCap, gb.index(32));
      Value firstHead = gb.mul(gb.div(x, rowsPerHead), gb.index(groupSize));
      Value t = gb.rem(x, rowsPerHead);
      auto rowOf = [&](GpuBuilder &l, Value i) {
        return l.add(l.mul(l.add(firstHead, i), rowsPerHead), t);
      };
      Value scan = sharedI32(gb, shared, 0, gb.index(8));
      Value unionWords = sharedI32(gb, shared, kWordsOffset, nWords);
      Value words = sharedI32(gb, shared, kWordsOffset, gb.mul(nWords, gb.index(groupSize + 1)));
      // Word w of head i (0 <= i < G) of the group.
      auto headWord = [&](GpuBuilder &l, Value i, Value w) {
        return l.add(l.mul(l.add(i, l.index(1)), nWords), w);
      };
      gb.loop(gb.threadId(), gb.mul(nWords, gb.index(groupSize + 1)), gb.index(kTableThreads),
              [&](GpuBuilder &l, Value w) { l.store(l.i32(0), words, {w}); });
      gb.barrier();
      // Each head's row as bits; entries outside [0, Kb) and past the count
      // are not read as blocks.
      gb.loop(gb.index(0), gb.index(groupSize), gb.index(1), [&](GpuBuilder &lh, Value i) {
        Value row = rowOf(lh, i);
        Value count = lh.nonNegative(lh.load(counts, {b, row}));
        lh.loop(lh.threadId(), lh.min(lh.toIndex(count), kbCap), lh.index(kTableThreads),
                [&](GpuBuilder &l, Value entry) {
                  Value kb = l.toIndex(l.load(table, {b, row, entry}));
                  l.when(l.cmp(CmpIPredicate::ult, kb, kbCap), [&](GpuBuilder &la) {
                    Value bit = arith::ShLIOp::create(la.builder(), la.location(), la.i32(1),
                                                      la.toI32(la.rem(kb, la.index(32))));
                    la.atomicOr(bit, words, {headWord(la, i, la.div(kb, la.index(32)))});
                  });
                });
      });
      gb.barrier();
      // cost(s) = sum over sub-groups of s * |union|, summed over the block.
      auto cost = [&](int64_t s) {
        Value local = gb.loop(gb.threadId(), nWords, gb.index(kTableThreads), {gb.index(0)},
                              [&](GpuBuilder &l, Value w, ValueRange sum) {
                                Value total = sum[0];
                                for (int64_t first = 0; first < groupSize; first += s) {
                                  Value word = l.load(words, {headWord(l, l.index(first), w)});
                                  for (int64_t i = first + 1; i < first + s; ++i)
                                    word = l.orI(word, l.load(words, {headWord(l, l.index(i), w)}));
                                  Value bits = l.toIndex(
                                      math::CtPopOp::create(l.builder(), l.location(), word));
                                  total = l.add(total, l.mul(bits, l.index(s)));
                                }
                                return SmallVector<Value>{total};
                              })[0];
        Value blockTotal = blockExclusiveScan(gb, local, scan, kTableThreads).second;
        return arith::UIToFPOp::create(gb.builder(), gb.location(), gb.builder().getF32Type(),
                                       gb.toI32(blockTotal))
            .getResult();
      };
      // The largest s within (1 + slack) of the per-head cost (the same fp32
      // arithmetic as the reference); every thread holds the same totals.
      Value limit = gb.mulF(gb.addF(gb.f32(1.0f), slack), cost(1));
      Value chosen = gb.index(1);
      for (int64_t s = 2; s <= groupSize; ++s)
        if (groupSize % s == 0)
          chosen = gb.select(gb.cmpF(CmpFPredicate::OLE, cost(s), limit), gb.index(s), chosen);
      gb.when(gb.cmp(CmpIPredicate::ugt, chosen, gb.index(1)), [&](GpuBuilder &lw) {
        lw.loop(lw.index(0), lw.index(groupSize), chosen, [&](GpuBuilder &lj, Value first) {
          Value last = lj.add(first, chosen);
          lj.loop(lj.threadId(), nWords, lj.index(kTableThreads), [&](GpuBuilder &l, Value w) {
            Value word = l.loop(
                first, last, l.index(1), {l.i32(0)}, [&](GpuBuilder &li, Value i, ValueRange acc) {
                  return SmallVector<Value>{li.orI(acc[0], li.load(words, {headWord(li, i, w)}))};
                })[0];
            l.store(word, unionWords, {w});
          });
          lj.barrier();
          lj.loop(first, last, lj.index(1), [&](GpuBuilder &lh, Value i) {
            Value none = lh.index(0);
            emitTableFromSharedWords(lh, unionWords, scan, table, counts, b, rowOf(lh, i), kbCap,
                                     none, none);
          });
          // The next sub-group's union goes where this one was read.
          lj.barrier();
        });
      });
    });
  };
  return Plans{std::move(plan)};
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
  plan.gridRule = "[E * T, B, 1]";
  const int64_t groups = staticDim(op.getMask(), 1) / s;
  plan.body = [=](GpuBuilder &gb, ValueRange args, Value shared) {
    Value mask = args[0], ctxLens = args[1], chunkLen = args[2], table = args[3];
    Value counts = args[4];
    Value row = gb.blockId(gpu::Dimension::x), b = gb.blockId(gpu::Dimension::y);
    Value kbCap = gb.dim(table, 2), nWords = gb.ceilDiv(kbCap, gb.index(32));
    Value queryBlocks = gb.dim(mask, 2);
    SeqGeometryIR g = SeqGeometryIR::build(gb, gb.toIndex(gb.load(ctxLens, {b})), chunkLen, bs);
    TableRowsIR rows = TableRowsIR::build(gb, gb.dim(table, 1), gb.index(groups));
    Value e = rows.group(gb, row);
    Value qbBegin = rows.firstQueryBlock(gb, row);
    Value qbEnd = rows.endQueryBlock(gb, row, queryBlocks);
    Value scan = sharedI32(gb, shared, 0, gb.index(8));
    Value words = sharedI32(gb, shared, kWordsOffset, nWords);
    // One kb per thread per round: OR over the group's heads and the row's
    // query blocks (causally valid pairs only), then one ballot per warp
    // gives a word.
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
            return lh.loop(qbBegin, qbEnd, lh.index(1), {acc[0]},
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
    emitTableFromSharedWords(gb, words, scan, table, counts, b, row, kbCap,
                             rows.chunkBlocksBegin(gb, g, row),
                             rows.chunkBlocksEnd(gb, g, row, queryBlocks));
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

/// lane 0 of each warp ORs a non-zero word into the union words of the table
/// row of group `e` that serves query block `qb`.
void orWordIntoTable(GpuBuilder &gb, Value table, int64_t groups, Value b, Value e, Value qb,
                     Value wordIndex, Value word) {
  Value row = TableRowsIR::build(gb, gb.dim(table, 1), gb.index(groups)).rowOf(gb, e, qb);
  Value first = gb.cmp(CmpIPredicate::eq, gb.laneId(), gb.index(0));
  Value nonZero = gb.cmp(CmpIPredicate::ne, word, gb.i32(0));
  Value inRange = gb.cmp(CmpIPredicate::ult, wordIndex,
                         gb.ceilDiv(gb.dim(table, 2), gb.index(32)));
  gb.when(gb.andI(first, gb.andI(nonZero, inRange)),
          [&](GpuBuilder &l) { l.atomicOr(word, table, {b, row, wordIndex}); });
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
  const int64_t groups = staticDim(op.getScores(), 1) / s;
  Plans plans;
  plans.push_back(planClearUnionWords(host, op.getTable()));
  plans.push_back(planThresholdRows(
      host, "select", op.getScores(), op.getCtxLens(), op.getChunkLen(),
      {"table", op.getTable()}, op.getBlockSize(), SelectionRule::of(op),
      [s, groups](GpuBuilder &gb, ValueRange args, Value b, Value h, Value qb, Value wordIndex,
                  Value word, Value, Value) {
        orWordIntoTable(gb, args[3], groups, b, gb.div(h, gb.index(s)), qb, wordIndex, word);
      }));
  plans.push_back(planTableFromWords(host, op.getCtxLens(), op.getChunkLen(), op.getBlockSize(),
                                     groups, op.getTable(), op.getCounts()));
  return plans;
}

//===----------------------------------------------------------------------===//
// Score kernels (tensor cores)
//===----------------------------------------------------------------------===//

namespace {

/// Pooled keys scored per step: one 64-key slice per warpgroup.
constexpr int64_t kScoreKeys = 128;

/// Two blocks per multiprocessor (<= 128 registers a thread; ~104 KB of
/// shared memory each): one block's exponentials run under the other's
/// wgmma, where one block alone alternates between them (the step's
/// log-sum-exp needs the whole product).
constexpr int64_t kScoreBlocksPerMultiprocessor = 2;

/// Shared memory of the score kernels (bytes): scratch, the query block, two
/// stages of pooled keys, then (fused) the row of scores. Tiles are in the
/// 128-byte-swizzle K-major layout of wgmma ([D / 64][rows][64]), on 1024-byte
/// boundaries.
struct ScoreLayout {
  int64_t rows, headDim;
  int64_t scratch() const { return 0; }
  int64_t queryTile() const { return 1024; }
  int64_t keyStageBytes() const { return kScoreKeys * headDim * 2; }
  int64_t keyTiles() const { return queryTile() + rows * headDim * 2; }
  int64_t row() const { return keyTiles() + 2 * keyStageBytes(); }
};

struct ScoreConfig {
  int64_t blockSize, headDim, groupSize;
  Type element;
  /// Two warpgroups.
  int64_t threads() const { return 256; }
  ScoreLayout layout() const { return {blockSize, headDim}; }
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

/// Where the 16-byte chunk of row r, columns [x, x + 8), of a [halves][rows][64]
/// 128-byte-swizzled tile goes.
SmallVector<Value, 3> swizzledHalf(LoopBuilder &l, Value r, Value x) {
  return {l.div(x, l.index(64)), r, swizzledColumn(l, r, l.rem(x, l.index(64)))};
}

/// Scores row `qb` of head `h` of sequence `b` against the pooled keys
/// [0, kbEnd) (see compact.block_scores) and hands each (kb, score) to `emit`.
/// All threads of the block take part.
///
/// The product is taken transposed, S^T = K Q^T, on the tensor cores
/// (wgmma, both operands in shared memory): each warpgroup owns 64 pooled
/// keys, so a thread holds whole rows of S^T (one key block against every
/// query of the block) and the log-sum-exp of a key block is a local
/// reduction plus two quad shuffles.
void emitScoreRow(GpuBuilder &gb, const ScoreConfig &cfg, Value q, Value pooled, Value scale,
                  const SeqGeometryIR &g, Value shared, Value b, Value h, Value qb, Value kbEnd,
                  function_ref<void(GpuBuilder &, Value kb, Value score)> emit) {
  const ScoreLayout layout = cfg.layout();
  const int64_t rows = cfg.blockSize, d = cfg.headDim, threads = cfg.threads();
  const int64_t chunksPerRow = d / 8, halves = (d + 63) / 64;
  Type f32 = gb.builder().getF32Type();
  Value queryTile = gb.sharedView(shared, layout.queryTile(), {halves, rows, 64}, cfg.element);
  Value keyTiles =
      gb.sharedView(shared, layout.keyTiles(), {2, halves, kScoreKeys, 64}, cfg.element);
  Value tid = gb.threadId(), lane = gb.laneId(), warp = gb.warpId();
  Value kv = gb.div(h, gb.index(cfg.groupSize));
  Value row0 = g.queryBlockBegin(gb, qb);
  Value address = memref::ExtractAlignedPointerAsIndexOp::create(gb.builder(), gb.location(),
                                                                 shared);
  Value sharedBase = arith::IndexCastUIOp::create(gb.builder(), gb.location(),
                                                  gb.builder().getI64Type(), address);
  auto sharedAddress = [&](GpuBuilder &l, Value offset) {
    return arith::AddIOp::create(
        l.builder(), l.location(), sharedBase,
        arith::IndexCastUIOp::create(l.builder(), l.location(), l.builder().getI64Type(), offset));
  };

  // The query block's rows (zero beyond the chunk) into shared memory.
  SmallVector<Value> tokens;
  for (int64_t i = 0; i < rows * chunksPerRow / threads; ++i) {
    Value c = gb.add(gb.index(i * threads), tid);
    Value r = gb.div(c, gb.index(chunksPerRow));
    Value x = gb.mul(gb.rem(c, gb.index(chunksPerRow)), gb.index(8));
    Value row = gb.add(row0, r);
    Value valid = gb.cmp(CmpIPredicate::ult, row, g.chunkLen);
    Value rowRead = gb.min(row, gb.sub(g.chunkLen, gb.index(1)));
    tokens.push_back(
        gb.copyAsync16(queryTile, swizzledHalf(gb, r, x), q, {b, rowRead, h, x}, valid));
  }
  gb.commitGroup(tokens);

  // Keys [0, computeEnd) are scored; beyond the context they are -inf.
  Value computeEnd = gb.min(kbEnd, g.numBlocks);
  Value steps = gb.ceilDiv(computeEnd, gb.index(kScoreKeys));
  auto issueStep = [&](GpuBuilder &l, Value step, Value want, Value stage) {
    Value kb0 = l.mul(step, l.index(kScoreKeys));
    SmallVector<Value> keyTokens;
    for (int64_t i = 0; i < kScoreKeys * chunksPerRow / threads; ++i) {
      Value c = l.add(l.index(i * threads), l.threadId());
      Value r = l.div(c, l.index(chunksPerRow));
      Value x = l.mul(l.rem(c, l.index(chunksPerRow)), l.index(8));
      Value kb = l.add(kb0, r);
      Value valid = l.andI(want, l.cmp(CmpIPredicate::ult, kb, computeEnd));
      Value kbRead = l.min(kb, l.sub(l.max(computeEnd, l.index(1)), l.index(1)));
      SmallVector<Value, 4> at = {stage};
      SmallVector<Value, 3> within = swizzledHalf(l, r, x);
      at.append(within.begin(), within.end());
      keyTokens.push_back(l.copyAsync16(keyTiles, at, pooled, {b, kv, kbRead, x}, valid));
    }
    l.commitGroup(keyTokens);
  };
  issueStep(gb, gb.index(0), gb.cmp(CmpIPredicate::ugt, steps, gb.index(0)), gb.index(0));

  // This thread's two key rows of S^T: 16 w + lane / 4 (+ 8) within its
  // warpgroup's 64; its columns (queries): 8 (i / 4) + 2 (lane % 4) + i % 2.
  Value warpgroup = gb.div(warp, gb.index(4));
  Value keyInGroup = gb.add(gb.mul(gb.rem(warp, gb.index(4)), gb.index(16)),
                            gb.div(lane, gb.index(4)));
  Value quadCol = gb.rem(lane, gb.index(4));
  Value logitScale = gb.mulF(scale, gb.f32(float(kLog2e)));
  // Queries of the block inside the chunk: [0, rowsInChunk).
  Value rowsInChunk = gb.min(gb.sub(g.chunkLen, gb.min(row0, g.chunkLen)), gb.index(rows));
  const int64_t regs = rows / 2;

  gb.loop(gb.index(0), steps, gb.index(1), [&](GpuBuilder &l, Value step) {
    Value stage = l.rem(step, l.index(2));
    Value next = l.add(step, l.index(1));
    Value hasNext = l.cmp(CmpIPredicate::ult, next, steps);
    issueStep(l, l.select(hasNext, next, step), hasNext, l.sub(l.index(1), stage));
    l.waitGroups(1);
    l.ptx("fence.proxy.async.shared::cta;");
    l.barrier();

    // S^T = K Q^T: this warpgroup's 64 keys against every query of the block.
    Value keyStage = l.add(l.index(layout.keyTiles()),
                           l.add(l.mul(stage, l.index(layout.keyStageBytes())),
                                 l.mul(warpgroup, l.index(64 * 128))));
    SmallVector<Value> acc(regs, l.f32(0.0f));
    l.ptx("wgmma.fence.sync.aligned;");
    for (int64_t ks = 0; ks < d / 16; ++ks) {
      int64_t within = (ks % 4) * 32;
      Value keyAt = l.add(keyStage, l.index(within + (ks / 4) * kScoreKeys * 128));
      Value queryAt = l.index(layout.queryTile() + within + (ks / 4) * rows * 128);
      acc = l.wgmmaShared(rows, cfg.element,
                          l.wgmmaDescriptor(sharedAddress(l, keyAt), 16, 1024),
                          l.wgmmaDescriptor(sharedAddress(l, queryAt), 16, 1024), acc,
                          /*accumulate=*/ks > 0);
    }
    l.ptx("wgmma.commit_group.sync.aligned;");
    l.ptx("wgmma.wait_group.sync.aligned 0;");
    acc = l.fenceOperands(acc);

    Value kbBase = l.add(l.mul(step, l.index(kScoreKeys)), l.mul(warpgroup, l.index(64)));
    for (int half = 0; half < 2; ++half) {
      Value kb = l.add(kbBase, l.add(keyInGroup, l.index(8 * half)));
      // Query j sees block kb whole iff P + row0 + j >= (kb + 1) bs - 1.
      Value first = g.firstScoringRow(l, kb);
      Value qMin = l.select(l.cmp(CmpIPredicate::ugt, first, row0), l.sub(first, row0),
                            l.index(0));
      Value keyValid = l.cmp(CmpIPredicate::ult, kb, computeEnd);
      Value allValid = l.andI(keyValid, l.andI(l.cmp(CmpIPredicate::eq, qMin, l.index(0)),
                                               l.cmp(CmpIPredicate::eq, rowsInChunk,
                                                     l.index(rows))));
      // Raw products; the scale goes into the exponent's FFMA (scale > 0:
      // max(scale x) = scale max(x)), so no scaled copy is held.
      SmallVector<Value> values;
      for (int64_t i = 0; i < regs; ++i)
        if ((i / 2) % 2 == half)
          values.push_back(acc[i]);
      SmallVector<Type> types(values.size(), f32);
      values = l.when(
          allValid, types, [&](GpuBuilder &) { return values; },
          [&](GpuBuilder &lm) {
            SmallVector<Value> masked;
            size_t at = 0;
            for (int64_t i = 0; i < regs; ++i) {
              if ((i / 2) % 2 != half)
                continue;
              Value col = lm.add(lm.index(8 * (i / 4) + i % 2), lm.mul(quadCol, lm.index(2)));
              Value ok = lm.andI(keyValid, lm.andI(lm.cmp(CmpIPredicate::uge, col, qMin),
                                                   lm.cmp(CmpIPredicate::ult, col, rowsInChunk)));
              masked.push_back(lm.select(ok, values[at++], lm.negInf(f32)));
            }
            return masked;
          });
      // log-sum-exp over the block's queries: the thread's values, then the
      // quad that shares the key row.
      Value m = l.negInf(f32);
      for (Value v : values)
        m = l.maxF(m, v);
      m = l.warpMax(m, {1, 2});
      Value empty = l.cmpF(CmpFPredicate::OEQ, m, l.negInf(f32));
      Value mScaled = l.select(empty, l.f32(0.0f), l.mulF(m, logitScale));
      Value sum = l.f32(0.0f);
      // contract: the multiply and subtract fuse into one FFMA.
      auto contract = arith::FastMathFlags::contract;
      for (Value v : values)
        sum = l.addF(sum, l.exp2(l.subF(l.mulF(v, logitScale, contract), mScaled, contract)));
      sum = l.warpSum(sum, {1, 2});
      Value lse = l.mulF(l.addF(mScaled, l.log2(sum)), l.f32(float(kLn2)));
      lse = l.select(empty, l.negInf(f32), lse);
      l.when(l.andI(l.cmp(CmpIPredicate::eq, quadCol, l.index(0)),
                    l.cmp(CmpIPredicate::ult, kb, kbEnd)),
             [&](GpuBuilder &le) { emit(le, kb, lse); });
    }
    // Everyone is done with this stage before it is refilled.
    l.barrier();
  });
  // Keys past the context: no query scores them.
  gb.loop(gb.add(gb.mul(steps, gb.index(kScoreKeys)), tid), kbEnd, gb.index(threads),
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
  plan.minBlocksPerMultiprocessor = kScoreBlocksPerMultiprocessor;
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
  const int64_t groups = staticDim(op.getQ(), 2) / s;
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
  select.minBlocksPerMultiprocessor = kScoreBlocksPerMultiprocessor;
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
    emitSelectRow(
        gb, g, qb, kbCap, selection, scratch, cfg.threads(),
        [&](GpuBuilder &l, Value kb) { return l.load(row, {kb}); },
        [&](GpuBuilder &l, Value wordIndex, Value word, Value, Value) {
          // The head read again: with s = G the group is the KV head the
          // score loop used, and holding it through that loop spills.
          Value e = l.div(l.rereadBlockId(gpu::Dimension::y), l.index(s));
          orWordIntoTable(l, table, groups, b, e, qb, wordIndex, word);
        });
  };
  plans.push_back(std::move(select));
  plans.push_back(planTableFromWords(host, op.getCtxLens(), chunkLen, op.getBlockSize(), groups,
                                     op.getTable(), op.getCounts()));
  return plans;
}
