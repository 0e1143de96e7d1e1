//===- CompactOps.cpp - compact dialect operations ------------------------===//
//
// Verifiers. Every message names the operand or attribute at fault, the
// dimension and its meaning, and the value that was expected.
//
//===----------------------------------------------------------------------===//

#include "compact/Dialect/Compact/IR/CompactOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

#include "llvm/Support/MathExtras.h"

#include <cmath>

using namespace mlir;
using namespace mlir::compact;

namespace {

/// A memref operand with the name the op's documentation gives it.
struct NamedMemRef {
  StringRef name;
  MemRefType type;
  NamedMemRef(StringRef name, Value value)
      : name(name), type(cast<MemRefType>(value.getType())) {}
  int64_t dim(unsigned d) const { return type.getDimSize(d); }
  bool isStatic(unsigned d) const { return !type.isDynamicDim(d); }
};

/// Shape checks shared by the verifiers.
class ShapeChecker {
public:
  explicit ShapeChecker(Operation *op) : op(op) {}

  /// Dimension `d` of `m` (meaning `what`, a size: heads, head dim, page
  /// size) must be static and positive; returns it.
  FailureOr<int64_t> staticDim(const NamedMemRef &m, unsigned d,
                               StringRef what) {
    if (!m.isStatic(d)) {
      op->emitOpError() << "operand '" << m.name << "' dim " << d << " (" << what
                        << ") must be static; generated code is specialised on it";
      return failure();
    }
    if (m.dim(d) <= 0) {
      op->emitOpError() << "operand '" << m.name << "' dim " << d << " (" << what
                        << ") must be positive, got " << m.dim(d);
      return failure();
    }
    return m.dim(d);
  }

  /// Dimension `d` of `m` must equal `expected` (when static).
  LogicalResult dimIs(const NamedMemRef &m, unsigned d, int64_t expected,
                      StringRef what, StringRef source) {
    if (!m.isStatic(d) || ShapedType::isDynamic(expected) ||
        m.dim(d) == expected)
      return success();
    return op->emitOpError()
           << "operand '" << m.name << "' dim " << d << " (" << what
           << ") must be " << expected << " to match " << source << ", got "
           << m.dim(d);
  }

  /// Dimension `da` of `a` and `db` of `b` must agree (when both static).
  LogicalResult sameDim(const NamedMemRef &a, unsigned da,
                        const NamedMemRef &b, unsigned db, StringRef what) {
    if (!a.isStatic(da) || !b.isStatic(db) || a.dim(da) == b.dim(db))
      return success();
    return op->emitOpError()
           << "operand '" << b.name << "' dim " << db << " (" << what
           << ") must be " << a.dim(da) << " to match '" << a.name << "' dim "
           << da << ", got " << b.dim(db);
  }

  /// `b` must have exactly the type of `a`.
  LogicalResult sameType(const NamedMemRef &a, const NamedMemRef &b) {
    if (a.type == b.type)
      return success();
    return op->emitOpError() << "operand '" << b.name << "' must have the type of '"
                             << a.name << "' (" << a.type << "), got " << b.type;
  }

  /// `b` must hold elements of `a`'s element type.
  LogicalResult sameElementType(const NamedMemRef &a, const NamedMemRef &b) {
    if (a.type.getElementType() == b.type.getElementType())
      return success();
    return op->emitOpError()
           << "operand '" << b.name << "' must have element type "
           << a.type.getElementType() << " like '" << a.name << "', got "
           << b.type.getElementType();
  }

  /// Every operand's dim 0 is the batch.
  LogicalResult sameBatch(ArrayRef<NamedMemRef> operands) {
    for (const NamedMemRef &m : operands.drop_front())
      if (failed(sameDim(operands.front(), 0, m, 0, "batch")))
        return failure();
    return success();
  }

  Operation *op;
};

/// Static geometry of a paged KV cache operand.
struct CacheGeometry {
  int64_t pageSize, kvHeads, headDim;
};

FailureOr<CacheGeometry> verifyCache(ShapeChecker &check,
                                     const NamedMemRef &cache,
                                     KVLayout layout) {
  unsigned pageDim = layout == KVLayout::NHD ? 1 : 2;
  unsigned headDim = layout == KVLayout::NHD ? 2 : 1;
  FailureOr<int64_t> ps = check.staticDim(cache, pageDim, "page size");
  if (failed(ps))
    return failure();
  FailureOr<int64_t> hkv = check.staticDim(cache, headDim, "kv heads");
  if (failed(hkv))
    return failure();
  FailureOr<int64_t> d = check.staticDim(cache, 3, "head dim");
  if (failed(d))
    return failure();
  return CacheGeometry{*ps, *hkv, *d};
}

/// Cache dims as a named memref view for dim checks: returns the index of the
/// kv-heads dimension for `layout`.
unsigned kvHeadsDim(KVLayout layout) { return layout == KVLayout::NHD ? 2 : 1; }

LogicalResult verifyBlockSizeVsPage(Operation *op, int64_t blockSize,
                                    int64_t pageSize) {
  if (blockSize % pageSize == 0)
    return success();
  return op->emitOpError() << "attribute 'block_size' (" << blockSize
                           << ") must be a multiple of the page size ("
                           << pageSize << ")";
}

std::optional<float> optionalFloat(FloatAttr attr) {
  if (!attr)
    return std::nullopt;
  return attr.getValue().convertToFloat();
}

/// The softmax scale: the attribute, or 1 / sqrt(head dim of `q`).
float effectiveScale(FloatAttr scale, MemRefType q) {
  if (scale)
    return scale.getValue().convertToFloat();
  return 1.0f / std::sqrt(float(q.getDimSize(3)));
}

LogicalResult verifyScale(Operation *op, std::optional<float> scale) {
  if (!scale || (std::isfinite(*scale) && *scale > 0.0f))
    return success();
  return op->emitOpError() << "attribute 'scale' must be positive and finite, got "
                           << *scale;
}

/// `kvHeads` must divide `qHeads`; returns G = Hq / Hkv.
FailureOr<int64_t> verifyGqa(Operation *op, int64_t qHeads, int64_t kvHeads,
                             StringRef kvSource) {
  if (kvHeads > 0 && qHeads % kvHeads == 0)
    return qHeads / kvHeads;
  op->emitOpError() << "query heads (" << qHeads
                    << ") must be a multiple of the kv heads of " << kvSource
                    << " (" << kvHeads << ")";
  return failure();
}

/// The execution group size `s` must divide G = Hq / Hkv.
LogicalResult verifyExecGroup(Operation *op, int64_t s, int64_t g,
                              StringRef sSource) {
  if (s > 0 && g % s == 0)
    return success();
  return op->emitOpError() << "execution group size " << sSource << " (" << s
                           << ") must divide the query heads per kv head ("
                           << g << ")";
}

/// Tables [B, E * T, Kb] and counts [B, E * T] for Hq query heads in groups of
/// s: T = 1 (one table per group) or T = Qb (one per group and query block;
/// `queryBlocks` is Qb where static).
LogicalResult verifyTables(ShapeChecker &check, const NamedMemRef &table,
                           const NamedMemRef &counts, int64_t qHeads, int64_t s,
                           std::optional<int64_t> queryBlocks) {
  int64_t groups = qHeads / s;
  if (failed(check.sameDim(table, 1, counts, 1, "table rows")))
    return failure();
  int64_t rows = table.dim(1);
  if (!ShapedType::isDynamic(rows)) {
    bool multiple = rows % groups == 0;
    bool valid = queryBlocks ? (rows == groups || (multiple && rows / groups == *queryBlocks))
                             : multiple;
    if (!valid) {
      InFlightDiagnostic diag = check.op->emitOpError()
                                << "operand '" << table.name << "' dim 1 (table rows, " << rows
                                << ") must be E = query heads / exec_group_size (" << qHeads
                                << " / " << s << " = " << groups << ")";
      if (queryBlocks) {
        diag << " or E * Qb (one table per query block, " << groups << " * " << *queryBlocks;
        int64_t product = 0;
        if (!llvm::MulOverflow(groups, *queryBlocks, product))
          diag << " = " << product;
        diag << ")";
      } else {
        diag << " or a multiple of it (one table per query block)";
      }
      return diag;
    }
  }
  return check.sameBatch({table, counts});
}

/// ceil(a / b) for a >= 0, b > 0, without overflow.
int64_t ceilDivSize(int64_t a, int64_t b) { return a / b + (a % b != 0); }

/// Qb = ceil(C / bs) where the chunk length is a static dim.
std::optional<int64_t> staticQueryBlocks(int64_t chunkLen, int64_t blockSize) {
  if (ShapedType::isDynamic(chunkLen))
    return std::nullopt;
  return ceilDivSize(chunkLen, blockSize);
}

LogicalResult verifyThreshold(Operation *op, ThresholdMode mode,
                              float threshold) {
  if (!std::isfinite(threshold))
    return op->emitOpError() << "attribute 'threshold' must be finite, got "
                             << threshold;
  if (mode != ThresholdMode::Absolute && !(threshold > 0.0f && threshold <= 1.0f))
    return op->emitOpError() << "attribute 'threshold' must be in (0, 1] for mode "
                             << stringifyThresholdMode(mode) << ", got "
                             << threshold;
  return success();
}

/// Checks for the union attributes given the mask/score operand [B, Hq, Qb, Kb].
LogicalResult verifyUnionOf(ShapeChecker &check, const NamedMemRef &rows,
                            const NamedMemRef &table, const NamedMemRef &counts,
                            int64_t kvHeads, int64_t s) {
  FailureOr<int64_t> hq = check.staticDim(rows, 1, "query heads");
  if (failed(hq))
    return failure();
  if (kvHeads <= 0 || *hq % kvHeads != 0)
    return check.op->emitOpError()
           << "attribute 'kv_heads' (" << kvHeads
           << ") must divide the query heads of '" << rows.name << "' (dim 1, "
           << *hq << ")";
  if (failed(verifyExecGroup(check.op, s, *hq / kvHeads, "'exec_group_size'")) ||
      failed(verifyTables(check, table, counts, *hq, s,
                          ShapedType::isDynamic(rows.dim(2)) ? std::nullopt
                                                             : std::optional(rows.dim(2)))) ||
      failed(check.sameDim(rows, 3, table, 2, "kv block capacity")))
    return failure();
  return check.sameBatch({rows, table});
}

} // namespace

//===----------------------------------------------------------------------===//
// AppendKVOp
//===----------------------------------------------------------------------===//

LogicalResult AppendKVOp::verify() {
  ShapeChecker check(*this);
  NamedMemRef kNew("k_new", getKNew()), vNew("v_new", getVNew()),
      pageTable("page_table", getPageTable()), lens("ctx_lens", getCtxLens()),
      kCache("k_cache", getKCache()), vCache("v_cache", getVCache());
  if (failed(check.sameType(kNew, vNew)) ||
      failed(check.sameType(kCache, vCache)) ||
      failed(check.sameElementType(kCache, kNew)))
    return failure();
  FailureOr<CacheGeometry> geo = verifyCache(check, kCache, getLayout());
  if (failed(geo))
    return failure();
  if (failed(check.dimIs(kNew, 2, geo->kvHeads, "kv heads", "'k_cache'")) ||
      failed(check.dimIs(kNew, 3, geo->headDim, "head dim", "'k_cache'")))
    return failure();
  return check.sameBatch({kNew, pageTable, lens});
}

//===----------------------------------------------------------------------===//
// PoolKeysOp
//===----------------------------------------------------------------------===//

LogicalResult PoolKeysOp::verify() {
  ShapeChecker check(*this);
  NamedMemRef kCache("k_cache", getKCache()),
      pageTable("page_table", getPageTable()), lens("ctx_lens", getCtxLens()),
      pooled("pooled", getPooled());
  FailureOr<CacheGeometry> geo = verifyCache(check, kCache, getLayout());
  if (failed(geo) ||
      failed(verifyBlockSizeVsPage(*this, getBlockSize(), geo->pageSize)))
    return failure();
  if (failed(check.dimIs(pooled, 1, geo->kvHeads, "kv heads", "'k_cache'")) ||
      failed(check.dimIs(pooled, 3, geo->headDim, "head dim", "'k_cache'")))
    return failure();
  return check.sameBatch({pageTable, lens, pooled});
}

//===----------------------------------------------------------------------===//
// BlockScoresOp
//===----------------------------------------------------------------------===//

namespace {
/// Checks shared by the ops that score queries against pooled keys; returns
/// the number of query heads.
FailureOr<int64_t> verifyScoring(ShapeChecker &check, const NamedMemRef &q,
                                 const NamedMemRef &pooled,
                                 const NamedMemRef &lens,
                                 std::optional<float> scale) {
  FailureOr<int64_t> hq = check.staticDim(q, 2, "query heads");
  if (failed(hq) || failed(check.staticDim(q, 3, "head dim")))
    return failure();
  FailureOr<int64_t> hkv = check.staticDim(pooled, 1, "kv heads");
  if (failed(hkv) || failed(verifyGqa(check.op, *hq, *hkv, "'pooled' (dim 1)")) ||
      failed(check.sameDim(q, 3, pooled, 3, "head dim")) ||
      failed(check.sameBatch({q, pooled, lens})) ||
      failed(verifyScale(check.op, scale)))
    return failure();
  return *hq;
}
} // namespace

float BlockScoresOp::getEffectiveScale() {
  return effectiveScale(getScaleAttr(), getQ().getType());
}

LogicalResult BlockScoresOp::verify() {
  ShapeChecker check(*this);
  NamedMemRef q("q", getQ()), pooled("pooled", getPooled()),
      lens("ctx_lens", getCtxLens()), scores("scores", getScores());
  FailureOr<int64_t> hq = verifyScoring(check, q, pooled, lens, optionalFloat(getScaleAttr()));
  if (failed(hq))
    return failure();
  int64_t qBlocks = q.isStatic(1) ? ceilDivSize(q.dim(1), getBlockSize())
                                   : ShapedType::kDynamic;
  if (failed(check.dimIs(scores, 1, *hq, "query heads", "'q' dim 2")) ||
      failed(check.dimIs(scores, 2, qBlocks, "query blocks",
                         "ceil(chunk length / block_size)")) ||
      failed(check.sameDim(pooled, 2, scores, 3, "kv block capacity")))
    return failure();
  return check.sameBatch({q, scores});
}

//===----------------------------------------------------------------------===//
// SelectBlocksOp
//===----------------------------------------------------------------------===//

LogicalResult SelectBlocksOp::verify() {
  ShapeChecker check(*this);
  NamedMemRef scores("scores", getScores()), lens("ctx_lens", getCtxLens()),
      mask("mask", getMask());
  static constexpr StringRef kDims[] = {"batch", "query heads", "query blocks",
                                        "kv block capacity"};
  for (unsigned d = 0; d < 4; ++d)
    if (failed(check.sameDim(scores, d, mask, d, kDims[d])))
      return failure();
  if (failed(verifyThreshold(*this, getMode(), getThreshold().convertToFloat())))
    return failure();
  return check.sameBatch({scores, lens});
}

//===----------------------------------------------------------------------===//
// BlockUnionOp
//===----------------------------------------------------------------------===//

LogicalResult BlockUnionOp::verify() {
  ShapeChecker check(*this);
  NamedMemRef mask("mask", getMask()), lens("ctx_lens", getCtxLens()),
      table("table", getTable()), counts("counts", getCounts());
  if (failed(verifyUnionOf(check, mask, table, counts, getKvHeads(),
                           getExecGroupSize())))
    return failure();
  return check.sameBatch({mask, lens});
}

//===----------------------------------------------------------------------===//
// SelectUnionOp
//===----------------------------------------------------------------------===//

LogicalResult SelectUnionOp::verify() {
  ShapeChecker check(*this);
  NamedMemRef scores("scores", getScores()), lens("ctx_lens", getCtxLens()),
      table("table", getTable()), counts("counts", getCounts());
  if (failed(verifyThreshold(*this, getMode(), getThreshold().convertToFloat())) ||
      failed(verifyUnionOf(check, scores, table, counts, getKvHeads(),
                           getExecGroupSize())))
    return failure();
  return check.sameBatch({scores, lens});
}

//===----------------------------------------------------------------------===//
// ScoreSelectUnionOp
//===----------------------------------------------------------------------===//

float ScoreSelectUnionOp::getEffectiveScale() {
  return effectiveScale(getScaleAttr(), getQ().getType());
}

LogicalResult ScoreSelectUnionOp::verify() {
  ShapeChecker check(*this);
  NamedMemRef q("q", getQ()), pooled("pooled", getPooled()),
      lens("ctx_lens", getCtxLens()), table("table", getTable()),
      counts("counts", getCounts());
  FailureOr<int64_t> hq = verifyScoring(check, q, pooled, lens, optionalFloat(getScaleAttr()));
  if (failed(hq) ||
      failed(verifyThreshold(*this, getMode(), getThreshold().convertToFloat())))
    return failure();
  int64_t g = *hq / pooled.dim(1);
  if (failed(verifyExecGroup(*this, getExecGroupSize(), g, "'exec_group_size'")) ||
      failed(verifyTables(check, table, counts, *hq, getExecGroupSize(),
                          staticQueryBlocks(q.dim(1), getBlockSize()))) ||
      failed(check.sameDim(pooled, 2, table, 2, "kv block capacity")))
    return failure();
  return check.sameBatch({q, table});
}

//===----------------------------------------------------------------------===//
// ChooseExecGroupsOp
//===----------------------------------------------------------------------===//

LogicalResult ChooseExecGroupsOp::verify() {
  ShapeChecker check(*this);
  NamedMemRef table("table", getTable()), counts("counts", getCounts());
  const int64_t hq = getQHeads(), hkv = getKvHeads();
  if (hq % hkv != 0)
    return emitOpError() << "attribute 'kv_heads' (" << hkv
                         << ") must divide attribute 'q_heads' (" << hq << ")";
  const float slack = getSlack().convertToFloat();
  if (!std::isfinite(slack) || slack < 0.0f)
    return emitOpError() << "attribute 'slack' must be finite and >= 0, got " << slack;
  if (failed(check.sameDim(table, 1, counts, 1, "table rows")))
    return failure();
  if (table.isStatic(1) && table.dim(1) % hq != 0)
    return emitOpError() << "operand 'table' dim 1 (table rows, " << table.dim(1)
                         << ") must be a multiple of attribute 'q_heads' (" << hq
                         << "): per-head tables, T rows per head";
  return check.sameBatch({table, counts});
}

//===----------------------------------------------------------------------===//
// DenseTableOp
//===----------------------------------------------------------------------===//

LogicalResult DenseTableOp::verify() {
  ShapeChecker check(*this);
  NamedMemRef lens("ctx_lens", getCtxLens()), table("table", getTable()),
      counts("counts", getCounts());
  if (failed(check.sameDim(table, 1, counts, 1, "table rows")))
    return failure();
  return check.sameBatch({lens, table, counts});
}

//===----------------------------------------------------------------------===//
// PagedAttentionOp
//===----------------------------------------------------------------------===//

float PagedAttentionOp::getEffectiveScale() {
  return effectiveScale(getScaleAttr(), getQ().getType());
}

int64_t PagedAttentionOp::getEffectiveExecGroupSize() {
  if (std::optional<uint64_t> s = getExecGroupSize())
    return int64_t(*s);
  return getQ().getType().getDimSize(2) / getBlockTable().getType().getDimSize(1);
}

namespace {
/// The split workspace of compact.paged_attention, when given.
LogicalResult verifyWorkspace(PagedAttentionOp op, ShapeChecker &check, const NamedMemRef &q,
                              int64_t hq) {
  if (bool(op.getPartialOut()) != bool(op.getPartialLse()))
    return op.emitOpError() << "operands 'partial_out' and 'partial_lse' (the split workspace) "
                            "must be given together";
  if (!op.getPartialOut())
    return success();
  NamedMemRef partialOut("partial_out", op.getPartialOut()),
      partialLse("partial_lse", op.getPartialLse());
  // [S, B, C, Hq, D] and [S, B, Hq, C]: one partial result per split.
  if (failed(check.sameDim(partialOut, 0, partialLse, 0, "splits")) ||
      failed(check.sameDim(q, 0, partialOut, 1, "batch")) ||
      failed(check.sameDim(q, 1, partialOut, 2, "chunk length")) ||
      failed(check.dimIs(partialOut, 3, hq, "query heads", "'q' dim 2")) ||
      failed(check.sameDim(q, 3, partialOut, 4, "head dim")) ||
      failed(check.sameDim(q, 0, partialLse, 1, "batch")) ||
      failed(check.dimIs(partialLse, 2, hq, "query heads", "'q' dim 2")) ||
      failed(check.sameDim(q, 1, partialLse, 3, "chunk length")))
    return failure();
  if (partialOut.isStatic(0) && partialOut.dim(0) <= 0)
    return op.emitOpError() << "operand 'partial_out' dim 0 (splits) must be positive, got "
                         << partialOut.dim(0);
  return success();
}
} // namespace

LogicalResult PagedAttentionOp::verify() {
  ShapeChecker check(*this);
  NamedMemRef q("q", getQ()), kCache("k_cache", getKCache()),
      vCache("v_cache", getVCache()), pageTable("page_table", getPageTable()),
      lens("ctx_lens", getCtxLens()), table("block_table", getBlockTable()),
      counts("block_counts", getBlockCounts()), out("out", getOut());

  FailureOr<int64_t> hq = check.staticDim(q, 2, "query heads");
  if (failed(hq) || failed(check.staticDim(q, 3, "head dim")) ||
      failed(check.sameType(kCache, vCache)) ||
      failed(check.sameElementType(q, kCache)) || failed(check.sameType(q, out)))
    return failure();
  FailureOr<CacheGeometry> geo = verifyCache(check, kCache, getLayout());
  if (failed(geo) || failed(check.sameDim(q, 3, kCache, 3, "head dim")) ||
      failed(verifyBlockSizeVsPage(*this, getBlockSize(), geo->pageSize)))
    return failure();
  FailureOr<int64_t> g = verifyGqa(
      *this, *hq, geo->kvHeads,
      ("'k_cache' (dim " + std::to_string(kvHeadsDim(getLayout())) + ")").c_str());
  if (failed(g))
    return failure();

  int64_t s = 0;
  if (std::optional<uint64_t> attr = getExecGroupSize()) {
    s = int64_t(*attr);
  } else {
    // Without the attribute the table has one row per group: s = Hq / rows.
    FailureOr<int64_t> groups = check.staticDim(table, 1, "table rows");
    if (failed(groups))
      return failure();
    if (*groups <= 0 || *hq % *groups != 0)
      return emitOpError() << "operand 'block_table' dim 1 (execution groups, " << *groups
                           << ") must divide the query heads (" << *hq
                           << "), or give 'exec_group_size'";
    s = *hq / *groups;
  }
  if (failed(verifyExecGroup(*this, s, *g,
                             getExecGroupSize() ? "'exec_group_size'"
                                                : "query heads / 'block_table' dim 1")))
    return failure();
  if (failed(verifyTables(check, table, counts, *hq, s,
                          staticQueryBlocks(q.dim(1), getBlockSize()))) ||
      failed(check.sameBatch({q, pageTable, lens, table, counts})))
    return failure();

  if (Value lseValue = getLse()) {
    NamedMemRef lse("lse", lseValue);
    if (failed(check.sameDim(q, 0, lse, 0, "batch")) ||
        failed(check.dimIs(lse, 1, *hq, "query heads", "'q' dim 2")) ||
        failed(check.sameDim(q, 1, lse, 2, "chunk length")))
      return failure();
  }
  if (failed(verifyWorkspace(*this, check, q, *hq)))
    return failure();
  return verifyScale(*this, optionalFloat(getScaleAttr()));
}

#define GET_OP_CLASSES
#include "compact/Dialect/Compact/IR/CompactOps.cpp.inc"
