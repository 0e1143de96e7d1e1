//===- CompactToLoops.cpp - compact ops to scf loops (CPU path) -----------===//
//
// Each pattern emits the loop nest of its op's definition (CompactOps.td);
// the structure follows the C++ reference (lib/Reference/Reference.cpp) so
// that selection results are bit-identical to it.
//
//===----------------------------------------------------------------------===//

#include "compact/Conversion/LoopBuilder.h"
#include "compact/Conversion/Passes.h"

#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Transforms/DialectConversion.h"

#include <cmath>
#include <numeric>

namespace mlir::compact {
#define GEN_PASS_DEF_CONVERTCOMPACTTOLOOPS
#include "compact/Conversion/Passes.h.inc"
} // namespace mlir::compact

using namespace mlir;
using namespace mlir::compact;

namespace {

using arith::CmpFPredicate;
using arith::CmpIPredicate;

int64_t staticDim(Value memref, unsigned d) {
  return cast<MemRefType>(memref.getType()).getDimSize(d);
}

/// Addressing of a paged cache: (page, slot, head, x) in either layout.
struct PagedCacheAccess {
  Value pageTable;
  int64_t pageSize;
  KVLayout layout;

  SmallVector<Value, 4> indices(Value page, Value slot, Value head, Value x) const {
    if (layout == KVLayout::NHD)
      return {page, slot, head, x};
    return {page, head, slot, x};
  }
  /// Cache indices of token `pos` of sequence `b`, KV head `head`, element x.
  SmallVector<Value, 4> token(LoopBuilder &lb, Value b, Value pos, Value head, Value x) const {
    Value ps = lb.index(pageSize);
    Value page = lb.toIndex(lb.load(pageTable, {b, lb.div(pos, ps)}));
    return indices(page, lb.rem(pos, ps), head, x);
  }
};

int64_t cachePageSize(Value cache, KVLayout layout) {
  return staticDim(cache, layout == KVLayout::NHD ? 1 : 2);
}

/// KV heads and head dim come from the cache, whose dims the verifiers require
/// static (the chunk's K/V and the pooled keys may have dynamic ones).
int64_t cacheKVHeads(Value cache, KVLayout layout) {
  return staticDim(cache, layout == KVLayout::NHD ? 2 : 1);
}

/// Selection parameters of select_blocks / select_union / score_select_union.
struct Selection {
  ThresholdMode mode;
  float threshold;
  int64_t sink, window;

  template <typename OpTy> static Selection of(OpTy op) {
    return {op.getMode(), op.getThreshold().convertToFloat(), int64_t(op.getSink()),
            int64_t(op.getWindow())};
  }
};

/// Row `qb` of one (sequence, head): scores the KV blocks [0, kbEnd) with
/// FlashPrefill's log-mass (see compact.block_scores) and hands each score
/// to `emit`. Two passes over the valid rows (max, then sum of exp), fp64,
/// as the reference does.
void emitBlockScoreRow(LoopBuilder &lb, Value q, Value pooled, const SeqGeometryIR &g, Value b,
                       Value h, Value kv, Value qb, double scale, Value kbEnd,
                       function_ref<void(LoopBuilder &, Value kb, Value)> emit) {
  int64_t headDim = staticDim(q, 3);
  Type f64 = lb.builder().getF64Type(), f32 = lb.builder().getF32Type();
  Value rowBegin = g.queryBlockBegin(lb, qb), rowEnd = g.queryBlockEnd(lb, qb);
  lb.forLoop(lb.index(0), kbEnd, [&](LoopBuilder &l, Value kb) {
    // The rows that have seen block kb whole: [first, rowEnd).
    Value first = l.max(rowBegin, g.firstScoringRow(l, kb));
    Value inContext = l.cmp(CmpIPredicate::ult, kb, g.numBlocks);
    Value last = l.select(inContext, rowEnd, first);
    auto logit = [&](LoopBuilder &li, Value row) {
      Value dot = li.forLoop(li.index(0), li.index(headDim), {li.f64(0.0)},
                             [&](LoopBuilder &ld, Value x, ValueRange acc) {
                               Value a = ld.castF(ld.load(q, {b, row, h, x}), f64);
                               Value c = ld.castF(ld.load(pooled, {b, kv, kb, x}), f64);
                               return SmallVector<Value>{ld.addF(acc[0], ld.mulF(a, c))};
                             })[0];
      return li.mulF(li.f64(scale), dot);
    };
    Value rowMax =
        l.forLoop(first, last, {l.negInf(f64)}, [&](LoopBuilder &li, Value row, ValueRange m) {
          return SmallVector<Value>{li.maxF(m[0], logit(li, row))};
        })[0];
    Value sum = l.forLoop(first, last, {l.f64(0.0)}, [&](LoopBuilder &li, Value row, ValueRange s) {
      Value e = li.exp(li.subF(logit(li, row), rowMax));
      return SmallVector<Value>{li.addF(s[0], e)};
    })[0];
    // An empty range gives -inf + log(0) = -inf: no valid query.
    emit(l, kb, l.truncF(l.addF(rowMax, l.log(sum)), f32));
  });
}

/// Thresholds row `qb` of one (sequence, head) (see compact.select_blocks):
/// `score(kb)` reads the row, `keep(kb, bit)` receives the decision for each
/// causally valid kb < min(last(qb) + 1, kbCap). Returns that bound.
Value emitSelectRow(LoopBuilder &lb, const SeqGeometryIR &g, Value qb, Value kbCap,
                    const Selection &sel, function_ref<Value(LoopBuilder &, Value kb)> score,
                    function_ref<void(LoopBuilder &, Value kb, Value bit)> keep) {
  Type f32 = lb.builder().getF32Type();
  Value last = g.lastVisibleBlock(lb, qb);
  Value end = lb.min(lb.add(last, lb.index(1)), kbCap);
  Value rowMax =
      lb.forLoop(lb.index(0), end, {lb.negInf(f32)}, [&](LoopBuilder &l, Value kb, ValueRange m) {
        Value s = score(l, kb);
        return SmallVector<Value>{
            arith::MaxNumFOp::create(l.builder(), l.location(), m[0], s).getResult()};
      })[0];
  Value bound;
  switch (sel.mode) {
  case ThresholdMode::RowMaxLog:
    bound = lb.addF(rowMax, lb.f32(std::log(sel.threshold)));
    break;
  case ThresholdMode::RowMax:
    bound = lb.mulF(lb.f32(sel.threshold), rowMax);
    break;
  case ThresholdMode::Absolute:
    bound = lb.f32(sel.threshold);
    break;
  }
  lb.forLoop(lb.index(0), end, [&](LoopBuilder &l, Value kb) {
    Value s = score(l, kb);
    Value passes =
        l.andI(l.cmpF(CmpFPredicate::OGE, s, bound), l.cmpF(CmpFPredicate::UNE, s, l.negInf(f32)));
    Value inSink = l.cmp(CmpIPredicate::ult, kb, l.index(sel.sink));
    Value inWindow = l.cmp(CmpIPredicate::ugt, l.add(kb, l.index(sel.window)), last);
    keep(l, kb, l.orI(passes, l.orI(inSink, inWindow)));
  });
  return end;
}

/// Clears the union flags ([Kb] i8) of one execution group.
void emitClearFlags(LoopBuilder &lb, Value flags, Value kbCap) {
  lb.forLoop(lb.index(0), kbCap, [&](LoopBuilder &l, Value kb) { l.store(l.i8(0), flags, {kb}); });
}

void emitSetFlag(LoopBuilder &lb, Value flags, Value kb, Value bit) {
  Value old = lb.load(flags, {kb});
  Value bit8 = arith::ExtUIOp::create(lb.builder(), lb.location(), lb.builder().getI8Type(), bit);
  lb.store(lb.orI(old, bit8), flags, {kb});
}

/// The row's chunk blocks [chunkBegin, chunkEnd), then the ascending table
/// with -1 padding and the count (see compact.block_union).
void emitTableFromFlags(LoopBuilder &lb, Value flags, Value table, Value counts, Value b,
                        Value e, Value kbCap, Value chunkBegin, Value chunkEnd) {
  lb.forLoop(chunkBegin, chunkEnd,
             [&](LoopBuilder &l, Value kb) { l.store(l.i8(1), flags, {kb}); });
  Value count =
      lb.forLoop(lb.index(0), kbCap, {lb.index(0)}, [&](LoopBuilder &l, Value kb, ValueRange n) {
        Value in = l.cmp(CmpIPredicate::ne, l.load(flags, {kb}), l.i8(0));
        l.ifThen(in, [&](LoopBuilder &li) { li.store(li.toI32(kb), table, {b, e, n[0]}); });
        Value inc = l.select(in, l.index(1), l.index(0));
        return SmallVector<Value>{l.add(n[0], inc)};
      })[0];
  lb.store(lb.toI32(count), counts, {b, e});
  lb.forLoop(count, kbCap, [&](LoopBuilder &l, Value i) { l.store(l.i32(-1), table, {b, e, i}); });
}

//===----------------------------------------------------------------------===//
// Patterns
//===----------------------------------------------------------------------===//

struct LowerAppendKV : OpRewritePattern<AppendKVOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AppendKVOp op, PatternRewriter &rewriter) const override {
    LoopBuilder(rewriter, op.getLoc()).allocaScope([&](LoopBuilder &lb) {
      PagedCacheAccess cache{op.getPageTable(), cachePageSize(op.getKCache(), op.getLayout()),
                             op.getLayout()};
      Value kNew = op.getKNew(), vNew = op.getVNew();
      Value chunkLen = lb.dim(kNew, 1);
      lb.forLoop(lb.index(0), lb.dim(kNew, 0), [&](LoopBuilder &l, Value b) {
        Value prefix = l.sub(l.toIndex(l.load(op.getCtxLens(), {b})), chunkLen);
        l.forLoop(l.index(0), chunkLen, [&](LoopBuilder &lt, Value t) {
          Value pos = lt.add(prefix, t);
          Value kvHeads = lt.index(cacheKVHeads(op.getKCache(), op.getLayout()));
          Value headDim = lt.index(staticDim(op.getKCache(), 3));
          lt.forLoop(lt.index(0), kvHeads, [&](LoopBuilder &lh, Value h) {
            lh.forLoop(lh.index(0), headDim, [&](LoopBuilder &lx, Value x) {
              SmallVector<Value, 4> dst = cache.token(lx, b, pos, h, x);
              lx.store(lx.load(kNew, {b, t, h, x}), op.getKCache(), dst);
              lx.store(lx.load(vNew, {b, t, h, x}), op.getVCache(), dst);
            });
          });
        });
      });
    });
    rewriter.eraseOp(op);
    return success();
  }
};

struct LowerPoolKeys : OpRewritePattern<PoolKeysOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(PoolKeysOp op, PatternRewriter &rewriter) const override {
    LoopBuilder(rewriter, op.getLoc()).allocaScope([&](LoopBuilder &lb) {
      PagedCacheAccess cache{op.getPageTable(), cachePageSize(op.getKCache(), op.getLayout()),
                             op.getLayout()};
      Value pooled = op.getPooled();
      Type f64 = rewriter.getF64Type(), f32 = rewriter.getF32Type();
      Type pooledType = cast<MemRefType>(pooled.getType()).getElementType();
      lb.forLoop(lb.index(0), lb.dim(pooled, 0), [&](LoopBuilder &l, Value b) {
        SeqGeometryIR g = SeqGeometryIR::build(l, l.toIndex(l.load(op.getCtxLens(), {b})),
                                               op.getChunkLen(), op.getBlockSize());
        // Only the blocks the chunk touched; earlier means stay as they are.
        l.forLoop(g.firstChunkBlock, g.numBlocks, [&](LoopBuilder &lk, Value kb) {
          Value begin = g.blockBegin(lk, kb), end = g.blockEnd(lk, kb);
          Value count = arith::UIToFPOp::create(
              lk.builder(), lk.location(), f64,
              arith::IndexCastUIOp::create(lk.builder(), lk.location(), lk.builder().getI64Type(),
                                           lk.sub(end, begin)));
          Value kvHeads = lk.index(cacheKVHeads(op.getKCache(), op.getLayout()));
          Value headDim = lk.index(staticDim(op.getKCache(), 3));
          lk.forLoop(lk.index(0), kvHeads, [&](LoopBuilder &lh, Value h) {
            lh.forLoop(lh.index(0), headDim, [&](LoopBuilder &lx, Value x) {
              Value sum = lx.forLoop(
                  begin, end, {lx.f64(0.0)}, [&](LoopBuilder &lj, Value j, ValueRange acc) {
                    Value k = lj.load(op.getKCache(), cache.token(lj, b, j, h, x));
                    return SmallVector<Value>{lj.addF(acc[0], lj.castF(k, f64))};
                  })[0];
              Value mean = lx.truncF(lx.divF(sum, count), f32);
              lx.store(lx.castF(mean, pooledType), pooled, {b, h, kb, x});
            });
          });
        });
      });
    });
    rewriter.eraseOp(op);
    return success();
  }
};

struct LowerBlockScores : OpRewritePattern<BlockScoresOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(BlockScoresOp op, PatternRewriter &rewriter) const override {
    LoopBuilder(rewriter, op.getLoc()).allocaScope([&](LoopBuilder &lb) {
      Value q = op.getQ(), scores = op.getScores();
      int64_t qHeads = staticDim(q, 2), groupSize = qHeads / staticDim(op.getPooled(), 1);
      Value chunkLen = lb.dim(q, 1), kbCap = lb.dim(scores, 3);
      Value queryBlocks = lb.ceilDiv(chunkLen, lb.index(op.getBlockSize()));
      lb.forLoop(lb.index(0), lb.dim(q, 0), [&](LoopBuilder &l, Value b) {
        SeqGeometryIR g = SeqGeometryIR::build(l, l.toIndex(l.load(op.getCtxLens(), {b})), chunkLen,
                                               op.getBlockSize());
        l.forLoop(l.index(0), l.index(qHeads), [&](LoopBuilder &lh, Value h) {
          Value kv = lh.div(h, lh.index(groupSize));
          lh.forLoop(lh.index(0), queryBlocks, [&](LoopBuilder &lq, Value qb) {
            emitBlockScoreRow(lq, q, op.getPooled(), g, b, h, kv, qb, op.getEffectiveScale(), kbCap,
                              [&](LoopBuilder &ls, Value kb, Value score) {
                                ls.store(score, scores, {b, h, qb, kb});
                              });
          });
        });
      });
    });
    rewriter.eraseOp(op);
    return success();
  }
};

struct LowerSelectBlocks : OpRewritePattern<SelectBlocksOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SelectBlocksOp op, PatternRewriter &rewriter) const override {
    LoopBuilder(rewriter, op.getLoc()).allocaScope([&](LoopBuilder &lb) {
      Value scores = op.getScores(), mask = op.getMask();
      Selection sel = Selection::of(op);
      Value kbCap = lb.dim(mask, 3);
      lb.forLoop(lb.index(0), lb.dim(mask, 0), [&](LoopBuilder &l, Value b) {
        SeqGeometryIR g = SeqGeometryIR::build(l, l.toIndex(l.load(op.getCtxLens(), {b})),
                                               op.getChunkLen(), op.getBlockSize());
        l.forLoop(l.index(0), l.dim(mask, 1), [&](LoopBuilder &lh, Value h) {
          lh.forLoop(lh.index(0), lh.dim(mask, 2), [&](LoopBuilder &lq, Value qb) {
            Value end = emitSelectRow(
                lq, g, qb, kbCap, sel,
                [&](LoopBuilder &ls, Value kb) {
                  return ls.load(scores, {b, h, qb, kb});
                },
                [&](LoopBuilder &ls, Value kb, Value bit) {
                  Value bit8 = arith::ExtUIOp::create(ls.builder(), ls.location(),
                                                      ls.builder().getI8Type(), bit);
                  ls.store(bit8, mask, {b, h, qb, kb});
                });
            // Causally invalid pairs and padding are 0.
            lq.forLoop(end, kbCap, [&](LoopBuilder &lz, Value kb) {
              lz.store(lz.i8(0), mask, {b, h, qb, kb});
            });
          });
        });
      });
    });
    rewriter.eraseOp(op);
    return success();
  }
};

/// Shared driver of the three union ops: for every (sequence, table row),
/// zero the flags, let `fillHead` OR in each head's selection for the query
/// blocks [qbBegin, qbEnd) the row serves, then write the table. A table has
/// T = rows / E rows per group: T = 1 serves all `queryBlocks`, T = Qb one
/// query block each (see compact.block_union).
void emitUnion(LoopBuilder &lb, Value ctxLens, Value chunkLen, int64_t blockSize, Value table,
               Value counts, Value qHeads, int64_t execGroupSize, Value queryBlocks,
               function_ref<void(LoopBuilder &, const SeqGeometryIR &, Value b, Value h,
                                 Value flags, Value kbCap, Value qbBegin, Value qbEnd)>
                   fillHead) {
  Value kbCap = lb.dim(table, 2);
  Value flags = lb.scratch({ShapedType::kDynamic}, lb.builder().getI8Type(), kbCap);
  TableRowsIR rows =
      TableRowsIR::build(lb, lb.dim(table, 1), lb.div(qHeads, lb.index(execGroupSize)));
  lb.forLoop(lb.index(0), lb.dim(table, 0), [&](LoopBuilder &l, Value b) {
    SeqGeometryIR g = SeqGeometryIR::build(l, l.toIndex(l.load(ctxLens, {b})), chunkLen, blockSize);
    l.forLoop(l.index(0), l.dim(table, 1), [&](LoopBuilder &le, Value row) {
      Value e = rows.group(le, row);
      Value qbBegin = rows.firstQueryBlock(le, row);
      Value qbEnd = rows.endQueryBlock(le, row, queryBlocks);
      emitClearFlags(le, flags, kbCap);
      Value firstHead = le.mul(e, le.index(execGroupSize));
      le.forLoop(firstHead, le.add(firstHead, le.index(execGroupSize)), [&](LoopBuilder &lh,
                                                                            Value h) {
        fillHead(lh, g, b, h, flags, kbCap, qbBegin, qbEnd);
      });
      emitTableFromFlags(le, flags, table, counts, b, row, kbCap,
                         rows.chunkBlocksBegin(le, g, row),
                         rows.chunkBlocksEnd(le, g, row, queryBlocks));
    });
  });
}

struct LowerBlockUnion : OpRewritePattern<BlockUnionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(BlockUnionOp op, PatternRewriter &rewriter) const override {
    LoopBuilder(rewriter, op.getLoc()).allocaScope([&](LoopBuilder &lb) {
      Value mask = op.getMask();
      emitUnion(
          lb, op.getCtxLens(), op.getChunkLen(), op.getBlockSize(), op.getTable(), op.getCounts(),
          lb.dim(mask, 1), op.getExecGroupSize(), lb.dim(mask, 2),
          [&](LoopBuilder &l, const SeqGeometryIR &g, Value b, Value h, Value flags, Value kbCap,
              Value qbBegin, Value qbEnd) {
            l.forLoop(qbBegin, qbEnd, [&](LoopBuilder &lq, Value qb) {
              // Only causally valid pairs count.
              Value end = lq.min(lq.add(g.lastVisibleBlock(lq, qb), lq.index(1)), kbCap);
              lq.forLoop(lq.index(0), end, [&](LoopBuilder &lk, Value kb) {
                Value m = lk.load(mask, {b, h, qb, kb});
                emitSetFlag(lk, flags, kb, lk.cmp(CmpIPredicate::ne, m, lk.i8(0)));
              });
            });
          });
    });
    rewriter.eraseOp(op);
    return success();
  }
};

struct LowerSelectUnion : OpRewritePattern<SelectUnionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SelectUnionOp op, PatternRewriter &rewriter) const override {
    LoopBuilder(rewriter, op.getLoc()).allocaScope([&](LoopBuilder &lb) {
      Value scores = op.getScores();
      Selection sel = Selection::of(op);
      emitUnion(
          lb, op.getCtxLens(), op.getChunkLen(), op.getBlockSize(), op.getTable(), op.getCounts(),
          lb.dim(scores, 1), op.getExecGroupSize(), lb.dim(scores, 2),
          [&](LoopBuilder &l, const SeqGeometryIR &g, Value b, Value h, Value flags, Value kbCap,
              Value qbBegin, Value qbEnd) {
            l.forLoop(qbBegin, qbEnd, [&](LoopBuilder &lq, Value qb) {
              emitSelectRow(
                  lq, g, qb, kbCap, sel,
                  [&](LoopBuilder &ls, Value kb) {
                    return ls.load(scores, {b, h, qb, kb});
                  },
                  [&](LoopBuilder &ls, Value kb, Value bit) { emitSetFlag(ls, flags, kb, bit); });
            });
          });
    });
    rewriter.eraseOp(op);
    return success();
  }
};

struct LowerScoreSelectUnion : OpRewritePattern<ScoreSelectUnionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ScoreSelectUnionOp op, PatternRewriter &rewriter) const override {
    LoopBuilder(rewriter, op.getLoc()).allocaScope([&](LoopBuilder &lb) {
      Value q = op.getQ();
      Selection sel = Selection::of(op);
      int64_t groupSize = staticDim(q, 2) / staticDim(op.getPooled(), 1);
      Value chunkLen = lb.dim(q, 1);
      Value queryBlocks = lb.ceilDiv(chunkLen, lb.index(op.getBlockSize()));
      // One row of scores lives in scratch, never in memory the caller sees.
      Value row =
          lb.scratch({ShapedType::kDynamic}, rewriter.getF32Type(), lb.dim(op.getTable(), 2));
      emitUnion(
          lb, op.getCtxLens(), chunkLen, op.getBlockSize(), op.getTable(), op.getCounts(),
          lb.dim(q, 2), op.getExecGroupSize(), queryBlocks,
          [&](LoopBuilder &l, const SeqGeometryIR &g, Value b, Value h, Value flags, Value kbCap,
              Value qbBegin, Value qbEnd) {
            Value kv = l.div(h, l.index(groupSize));
            l.forLoop(qbBegin, qbEnd, [&](LoopBuilder &lq, Value qb) {
              Value end = lq.min(lq.add(g.lastVisibleBlock(lq, qb), lq.index(1)), kbCap);
              emitBlockScoreRow(
                  lq, q, op.getPooled(), g, b, h, kv, qb, op.getEffectiveScale(), end,
                  [&](LoopBuilder &ls, Value kb, Value s) { ls.store(s, row, {kb}); });
              emitSelectRow(
                  lq, g, qb, kbCap, sel,
                  [&](LoopBuilder &ls, Value kb) { return ls.load(row, {kb}); },
                  [&](LoopBuilder &ls, Value kb, Value bit) { emitSetFlag(ls, flags, kb, bit); });
            });
          });
    });
    rewriter.eraseOp(op);
    return success();
  }
};

struct LowerDenseTable : OpRewritePattern<DenseTableOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(DenseTableOp op, PatternRewriter &rewriter) const override {
    LoopBuilder lb(rewriter, op.getLoc());
    Value table = op.getTable(), counts = op.getCounts();
    Value kbCap = lb.dim(table, 2), bs = lb.index(op.getBlockSize());
    lb.forLoop(lb.index(0), lb.dim(table, 0), [&](LoopBuilder &l, Value b) {
      Value numBlocks = l.ceilDiv(l.toIndex(l.load(op.getCtxLens(), {b})), bs);
      l.forLoop(l.index(0), l.dim(table, 1), [&](LoopBuilder &le, Value e) {
        le.store(le.toI32(numBlocks), counts, {b, e});
        le.forLoop(le.index(0), kbCap, [&](LoopBuilder &lk, Value kb) {
          Value in = lk.cmp(CmpIPredicate::ult, kb, numBlocks);
          lk.store(lk.select(in, lk.toI32(kb), lk.i32(-1)), table, {b, e, kb});
        });
      });
    });
    rewriter.eraseOp(op);
    return success();
  }
};

/// For each (sequence, KV group, table row index): the union sizes of every
/// sub-group size dividing G, the choice by cost, then the chosen sub-group
/// unions written over the heads' rows (see compact.choose_exec_groups).
struct LowerChooseExecGroups : OpRewritePattern<ChooseExecGroupsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ChooseExecGroupsOp op, PatternRewriter &rewriter) const override {
    LoopBuilder(rewriter, op.getLoc()).allocaScope([&](LoopBuilder &lb) {
      Value table = op.getTable(), counts = op.getCounts();
      const int64_t qHeads = op.getQHeads(), kvHeads = op.getKvHeads();
      const int64_t groupSize = qHeads / kvHeads;
      Value kbCap = lb.dim(table, 2);
      Value rowsPerHead = lb.div(lb.dim(table, 1), lb.index(qHeads));
      Value flags = lb.scratch({ShapedType::kDynamic}, rewriter.getI8Type(), kbCap);
      Value budget = lb.f32(1.0f + op.getSlack().convertToFloat());
      auto toF32 = [](LoopBuilder &l, Value index) -> Value {
        return arith::UIToFPOp::create(l.builder(), l.location(), l.builder().getF32Type(),
                                       l.toI32(index));
      };
      lb.forLoop(lb.index(0), lb.dim(table, 0), [&](LoopBuilder &l, Value b) {
        l.forLoop(l.index(0), l.index(kvHeads), [&](LoopBuilder &lg, Value kv) {
          lg.forLoop(lg.index(0), rowsPerHead, [&](LoopBuilder &lt, Value t) {
            Value firstHead = lt.mul(kv, lt.index(groupSize));
            auto rowOf = [&](LoopBuilder &x, Value head) {
              return x.add(x.mul(head, rowsPerHead), t);
            };
            // Flags of the union of heads [first, first + n); its size.
            auto unionOf = [&](LoopBuilder &x, Value first, Value n) {
              emitClearFlags(x, flags, kbCap);
              x.forLoop(first, x.add(first, n), [&](LoopBuilder &xh, Value h) {
                Value row = rowOf(xh, h);
                Value count = xh.nonNegative(xh.load(counts, {b, row}));
                xh.forLoop(xh.index(0), xh.min(xh.toIndex(count), kbCap),
                           [&](LoopBuilder &xi, Value i) {
                             Value kb = xi.toIndex(xi.load(table, {b, row, i}));
                             xi.ifThen(xi.cmp(CmpIPredicate::ult, kb, kbCap),
                                       [&](LoopBuilder &xk) { xk.store(xk.i8(1), flags, {kb}); });
                           });
              });
              return x.forLoop(x.index(0), kbCap, {x.index(0)},
                               [&](LoopBuilder &xk, Value kb, ValueRange n) {
                                 Value in = xk.cmp(CmpIPredicate::ne, xk.load(flags, {kb}),
                                                   xk.i8(0));
                                 return SmallVector<Value>{
                                     xk.add(n[0], xk.select(in, xk.index(1), xk.index(0)))};
                               })[0];
            };
            auto cost = [&](LoopBuilder &x, int64_t s) {
              return x.forLoop(x.index(0), x.index(groupSize / s), {x.index(0)},
                               [&](LoopBuilder &xj, Value j, ValueRange sum) {
                                 Value first = xj.add(firstHead, xj.mul(j, xj.index(s)));
                                 Value size = unionOf(xj, first, xj.index(s));
                                 return SmallVector<Value>{
                                     xj.add(sum[0], xj.mul(size, xj.index(s)))};
                               })[0];
            };
            Value limit = lt.mulF(budget, toF32(lt, cost(lt, 1)));
            Value chosen = lt.index(1);
            for (int64_t s = 2; s <= groupSize; ++s)
              if (groupSize % s == 0)
                chosen = lt.select(lt.cmpF(CmpFPredicate::OLE, toF32(lt, cost(lt, s)), limit),
                                   lt.index(s), chosen);
            lt.ifThen(lt.cmp(CmpIPredicate::ugt, chosen, lt.index(1)), [&](LoopBuilder &lw) {
              lw.forLoop(firstHead, lw.add(firstHead, lw.index(groupSize)), chosen,
                         [&](LoopBuilder &lj, Value first) {
                           unionOf(lj, first, chosen);
                           lj.forLoop(first, lj.add(first, chosen), [&](LoopBuilder &lh, Value h) {
                             Value none = lh.index(0);
                             emitTableFromFlags(lh, flags, table, counts, b, rowOf(lh, h), kbCap,
                                                none, none);
                           });
                         });
            });
          });
        });
      });
    });
    rewriter.eraseOp(op);
    return success();
  }
};

/// FlashAttention over the group's table for a tile of `rowTile` query rows of
/// one head (see ConvertCompactToLoops' description); the head dim is one
/// vector.
struct LowerPagedAttention : OpRewritePattern<PagedAttentionOp> {
  LowerPagedAttention(MLIRContext *ctx, int64_t rowTile)
      : OpRewritePattern(ctx), rowTile(rowTile) {}

  LogicalResult matchAndRewrite(PagedAttentionOp op, PatternRewriter &rewriter) const override {
    LoopBuilder(rewriter, op.getLoc()).allocaScope([&](LoopBuilder &lb) {
      Value q = op.getQ(), out = op.getOut(), lse = op.getLse();
      Value table = op.getBlockTable(), counts = op.getBlockCounts();
      Value kCache = op.getKCache(), vCache = op.getVCache();
      PagedCacheAccess cache{op.getPageTable(), cachePageSize(kCache, op.getLayout()),
                             op.getLayout()};
      const int64_t qHeads = staticDim(q, 2), headDim = staticDim(q, 3);
      const int64_t s = op.getEffectiveExecGroupSize(), bs = op.getBlockSize();
      const int64_t groupSize =
          qHeads / staticDim(kCache, op.getLayout() == KVLayout::NHD ? 2 : 1);
      Type f32 = rewriter.getF32Type();
      Type dataType = cast<MemRefType>(q.getType()).getElementType();
      auto rowF32 = VectorType::get({headDim}, f32);
      auto rowData = VectorType::get({headDim}, dataType);
      Value chunkLen = lb.dim(q, 1);
      // A tile of rows lies in one query block: with one table per query
      // block (T = Qb rows per group) all its rows read the same table row.
      const int64_t tileRows = std::gcd(rowTile, bs);
      Value tile = lb.index(tileRows), zero = lb.index(0);
      TableRowsIR tableRows = TableRowsIR::build(lb, lb.dim(table, 1), lb.index(qHeads / s));
      // Per-row state of the online softmax, and the score tile.
      Value rowMax = lb.scratch({tileRows}, f32), rowSum = lb.scratch({tileRows}, f32);
      Value acc = lb.scratch({tileRows, headDim}, f32);
      Value scoreTile = lb.scratch({tileRows, bs}, f32);
      auto loadRow = [&](LoopBuilder &l, Value memref, ValueRange indices) {
        return l.castF(l.loadVector(memref, indices, rowData), rowF32);
      };

      lb.forLoop(zero, lb.dim(q, 0), [&](LoopBuilder &l, Value b) {
        SeqGeometryIR g =
            SeqGeometryIR::build(l, l.toIndex(l.load(op.getCtxLens(), {b})), chunkLen, bs);
        l.forLoop(l.index(0), l.index(qHeads / s), [&](LoopBuilder &le, Value e) {
          Value firstHead = le.mul(e, le.index(s));
          Value kv = le.div(firstHead, le.index(groupSize));
          le.forLoop(firstHead, le.add(firstHead, le.index(s)), [&](LoopBuilder &lh, Value h) {
            lh.forLoop(lh.index(0), chunkLen, tile, [&](LoopBuilder &lt, Value t0) {
              Value rows = lt.min(tile, lt.sub(chunkLen, t0));
              Value tableRow = tableRows.rowOf(lt, e, lt.div(t0, lt.index(bs)));
              Value count = lt.toIndex(lt.load(counts, {b, tableRow}));
              lt.forLoop(lt.index(0), tile, [&](LoopBuilder &li, Value r) {
                li.store(li.negInf(f32), rowMax, {r});
                li.store(li.f32(0.0f), rowSum, {r});
                li.storeVector(li.broadcast(li.f32(0.0f), rowF32), acc, {r, li.index(0)});
              });

              // The table walk: one KV block at a time, read in place.
              lt.forLoop(lt.index(0), count, [&](LoopBuilder &lw, Value i) {
                Value kb = lw.toIndex(lw.load(table, {b, tableRow, i}));
                Value j0 = g.blockBegin(lw, kb);
                Value n = lw.sub(g.blockEnd(lw, kb), j0);

                // S = scale * Q K^T; key j is visible to row t iff j <= P + t.
                lw.forLoop(lw.index(0), rows, [&](LoopBuilder &lr, Value r) {
                  Value t = lr.add(t0, r);
                  Value pos = lr.add(g.prefixLen, t);
                  Value qRow = loadRow(lr, q, {b, t, h, lr.index(0)});
                  lr.forLoop(lr.index(0), n, [&](LoopBuilder &lj, Value jj) {
                    Value j = lj.add(j0, jj);
                    Value visible = lj.cmp(CmpIPredicate::ule, j, pos);
                    Value score = lj.ifThenElse(
                        visible, f32,
                        [&](LoopBuilder &ly) {
                          Value kRow = loadRow(ly, kCache, cache.token(ly, b, j, kv, ly.index(0)));
                          Value dot = ly.reduceAdd(ly.mulF(qRow, kRow));
                          return ly.mulF(ly.f32(op.getEffectiveScale()), dot);
                        },
                        [&](LoopBuilder &ln) { return ln.negInf(f32); });
                    lj.store(score, scoreTile, {r, jj});
                  });
                });

                // Online softmax: m' = max(m, rowmax(S)); c = exp(m - m');
                // l' = c * l + sum(exp(S - m')); acc *= c; S <- exp(S - m').
                lw.forLoop(lw.index(0), rows, [&](LoopBuilder &lr, Value r) {
                  Value mOld = lr.load(rowMax, {r});
                  Value mNew = lr.forLoop(lr.index(0), n, {mOld},
                                          [&](LoopBuilder &lj, Value jj, ValueRange m) {
                                            return SmallVector<Value>{
                                                lj.maxF(m[0], lj.load(scoreTile, {r, jj}))};
                                          })[0];
                  // A row that has seen no key yet keeps m = -inf; subtract 0.
                  Value isEmpty = lr.cmpF(CmpFPredicate::OEQ, mNew, lr.negInf(f32));
                  Value mSafe = lr.select(isEmpty, lr.f32(0.0f), mNew);
                  Value corr = lr.exp(lr.subF(mOld, mSafe));
                  Value blockSum =
                      lr.forLoop(lr.index(0), n, {lr.f32(0.0f)},
                                 [&](LoopBuilder &lj, Value jj, ValueRange sum) {
                                   Value p = lj.exp(lj.subF(lj.load(scoreTile, {r, jj}), mSafe));
                                   lj.store(p, scoreTile, {r, jj});
                                   return SmallVector<Value>{lj.addF(sum[0], p)};
                                 })[0];
                  lr.store(lr.addF(lr.mulF(corr, lr.load(rowSum, {r})), blockSum), rowSum, {r});
                  lr.store(mNew, rowMax, {r});
                  Value accRow = lr.loadVector(acc, {r, lr.index(0)}, rowF32);
                  lr.storeVector(lr.mulF(lr.broadcast(corr, rowF32), accRow), acc,
                                 {r, lr.index(0)});
                });

                // acc += P V.
                lw.forLoop(lw.index(0), rows, [&](LoopBuilder &lr, Value r) {
                  Value accRow = lr.loadVector(acc, {r, lr.index(0)}, rowF32);
                  Value updated =
                      lr.forLoop(lr.index(0), n, {accRow},
                                 [&](LoopBuilder &lj, Value jj, ValueRange a) {
                                   Value p = lj.broadcast(lj.load(scoreTile, {r, jj}), rowF32);
                                   Value j = lj.add(j0, jj);
                                   Value vRow = loadRow(lj, vCache,
                                                        cache.token(lj, b, j, kv, lj.index(0)));
                                   return SmallVector<Value>{lj.fma(p, vRow, a[0])};
                                 })[0];
                  lr.storeVector(updated, acc, {r, lr.index(0)});
                });
              });

              // out = acc / l; a row that saw no key gets zeros and lse = -inf.
              lt.forLoop(lt.index(0), rows, [&](LoopBuilder &lr, Value r) {
                Value t = lr.add(t0, r);
                Value sum = lr.load(rowSum, {r});
                Value seen = lr.cmpF(CmpFPredicate::OGT, sum, lr.f32(0.0f));
                Value inv = lr.select(seen, lr.divF(lr.f32(1.0f), sum), lr.f32(0.0f));
                Value o = lr.mulF(lr.loadVector(acc, {r, lr.index(0)}, rowF32),
                                  lr.broadcast(inv, rowF32));
                lr.storeVector(lr.castF(o, rowData), out, {b, t, h, lr.index(0)});
                if (lse) {
                  Value value = lr.select(seen, lr.addF(lr.load(rowMax, {r}), lr.log(sum)),
                                          lr.negInf(f32));
                  lr.store(value, lse, {b, h, t});
                }
              });
            });
          });
        });
      });
    });
    rewriter.eraseOp(op);
    return success();
  }

  int64_t rowTile;
};

struct ConvertCompactToLoopsPass
    : compact::impl::ConvertCompactToLoopsBase<ConvertCompactToLoopsPass> {
  using Base::Base;
  void runOnOperation() override {
    if (rowTile <= 0) {
      getOperation().emitError() << "option 'row-tile' must be positive, got " << rowTile;
      return signalPassFailure();
    }
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    patterns.add<LowerAppendKV, LowerPoolKeys, LowerBlockScores, LowerSelectBlocks, LowerBlockUnion,
                 LowerSelectUnion, LowerScoreSelectUnion, LowerChooseExecGroups,
                 LowerDenseTable>(ctx);
    patterns.add<LowerPagedAttention>(ctx, rowTile);
    ConversionTarget target(*ctx);
    target.addIllegalDialect<CompactDialect>();
    target.addLegalDialect<arith::ArithDialect, math::MathDialect, memref::MemRefDialect,
                           scf::SCFDialect, vector::VectorDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    if (failed(applyPartialConversion(getOperation(), target, std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
