//===- FuseSelection.cpp - fuse scoring, selection and block union --------===//
//
// select_blocks -> block_union       becomes  select_union
// block_scores  -> select_union      becomes  score_select_union
//
// when the buffer between the two ops is a function-local temporary, so the
// generated kernels never write the 2D mask (or the scores) to memory.
//
//===----------------------------------------------------------------------===//

#include "compact/Dialect/Compact/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::compact {
#define GEN_PASS_DEF_COMPACTFUSESELECTION
#include "compact/Dialect/Compact/Transforms/Passes.h.inc"
} // namespace mlir::compact

using namespace mlir;
using namespace mlir::compact;

namespace {

/// If `buffer` is a temporary of the function (alloc / alloca) whose only
/// users are one `ProducerOp` that writes it (through `producedBuffer`),
/// `consumer`, and deallocs, returns the producer.
template <typename ProducerOp>
ProducerOp findTemporaryProducer(Value buffer, Operation *consumer,
                                 function_ref<Value(ProducerOp)> producedBuffer) {
  Operation *def = buffer.getDefiningOp();
  if (!def || !isa<memref::AllocOp, memref::AllocaOp>(def))
    return nullptr;
  ProducerOp producer;
  for (Operation *user : buffer.getUsers()) {
    if (user == consumer || isa<memref::DeallocOp>(user))
      continue;
    auto candidate = dyn_cast<ProducerOp>(user);
    if (!candidate || producer || producedBuffer(candidate) != buffer)
      return nullptr;
    producer = candidate;
  }
  if (!producer || producer->getBlock() != consumer->getBlock() ||
      !producer->isBeforeInBlock(consumer))
    return nullptr;
  return producer;
}

/// True if no op strictly between `first` and `last` (same block) may write
/// or free memory; allocations are fine.
bool noWritesBetween(Operation *first, Operation *last) {
  for (Operation *op = first->getNextNode(); op != last; op = op->getNextNode()) {
    std::optional<SmallVector<MemoryEffects::EffectInstance>> effects =
        getEffectsRecursively(op);
    if (!effects)
      return false;
    for (const MemoryEffects::EffectInstance &effect : *effects)
      if (isa<MemoryEffects::Write, MemoryEffects::Free>(effect.getEffect()))
        return false;
  }
  return true;
}

/// Erases `buffer`'s allocation and deallocs once nothing else uses it.
void eraseTemporary(PatternRewriter &rewriter, Value buffer) {
  for (Operation *user : llvm::make_early_inc_range(buffer.getUsers()))
    if (isa<memref::DeallocOp>(user))
      rewriter.eraseOp(user);
  if (buffer.use_empty())
    rewriter.eraseOp(buffer.getDefiningOp());
}

/// `chunkLen` is the chunk length of `q` ([B, C, Hq, D]): `memref.dim %q, 1`
/// or a constant equal to a static dim 1.
bool isChunkLengthOf(Value chunkLen, Value q) {
  if (auto dim = chunkLen.getDefiningOp<memref::DimOp>()) {
    std::optional<int64_t> index = dim.getConstantIndex();
    return dim.getSource() == q && index && *index == 1;
  }
  auto type = cast<MemRefType>(q.getType());
  APInt value;
  if (!type.isDynamicDim(1) && matchPattern(chunkLen, m_ConstantInt(&value)))
    return value.getSExtValue() == type.getDimSize(1);
  return false;
}

struct FuseSelectIntoUnion : OpRewritePattern<BlockUnionOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(BlockUnionOp unionOp,
                                PatternRewriter &rewriter) const override {
    Value mask = unionOp.getMask();
    SelectBlocksOp select = findTemporaryProducer<SelectBlocksOp>(
        mask, unionOp, [](SelectBlocksOp op) -> Value { return op.getMask(); });
    if (!select)
      return rewriter.notifyMatchFailure(unionOp, "mask is not a fusible temporary");
    if (select.getCtxLens() != unionOp.getCtxLens() ||
        select.getChunkLen() != unionOp.getChunkLen() ||
        select.getBlockSize() != unionOp.getBlockSize())
      return rewriter.notifyMatchFailure(unionOp, "selection geometry differs");
    if (!noWritesBetween(select, unionOp))
      return rewriter.notifyMatchFailure(unionOp, "memory written in between");

    rewriter.replaceOpWithNewOp<SelectUnionOp>(
        unionOp, select.getScores(), unionOp.getCtxLens(), unionOp.getChunkLen(),
        unionOp.getTable(), unionOp.getCounts(), unionOp.getBlockSize(),
        unionOp.getKvHeads(), unionOp.getExecGroupSize(), select.getMode(),
        select.getThreshold(), select.getSink(), select.getWindow());
    rewriter.eraseOp(select);
    eraseTemporary(rewriter, mask);
    return success();
  }
};

struct FuseScoresIntoSelectUnion : OpRewritePattern<SelectUnionOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(SelectUnionOp fused,
                                PatternRewriter &rewriter) const override {
    Value scores = fused.getScores();
    BlockScoresOp scoring = findTemporaryProducer<BlockScoresOp>(
        scores, fused, [](BlockScoresOp op) -> Value { return op.getScores(); });
    if (!scoring)
      return rewriter.notifyMatchFailure(fused, "scores are not a fusible temporary");
    auto pooledType = cast<MemRefType>(scoring.getPooled().getType());
    if (scoring.getCtxLens() != fused.getCtxLens() ||
        scoring.getBlockSize() != fused.getBlockSize() ||
        pooledType.getDimSize(1) != int64_t(fused.getKvHeads()) ||
        !isChunkLengthOf(fused.getChunkLen(), scoring.getQ()))
      return rewriter.notifyMatchFailure(fused, "scoring geometry differs");
    if (!noWritesBetween(scoring, fused))
      return rewriter.notifyMatchFailure(fused, "memory written in between");

    rewriter.replaceOpWithNewOp<ScoreSelectUnionOp>(
        fused, scoring.getQ(), scoring.getPooled(), fused.getCtxLens(),
        fused.getTable(), fused.getCounts(), fused.getBlockSize(),
        scoring.getScaleAttr(), fused.getExecGroupSize(), fused.getMode(),
        fused.getThreshold(), fused.getSink(), fused.getWindow());
    rewriter.eraseOp(scoring);
    eraseTemporary(rewriter, scores);
    return success();
  }
};

struct CompactFuseSelectionPass
    : compact::impl::CompactFuseSelectionBase<CompactFuseSelectionPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseSelectIntoUnion, FuseScoresIntoSelectUnion>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
