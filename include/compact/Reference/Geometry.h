//===- Geometry.h - block geometry of one chunk step ------------*- C++ -*-===//
//
// The index rules of the compact dialect in one place (see CompactOps.td):
// where the chunk sits, which KV blocks it touches, which (query block, KV
// block) pairs are causally valid. The C++ reference, the runtime and the
// tests use these; the lowerings emit the same formulas as IR.
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_REFERENCE_GEOMETRY_H
#define COMPACT_REFERENCE_GEOMETRY_H

#include <algorithm>
#include <cstdint>

namespace compact {

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// One sequence at one chunk step: `ctxLen` tokens after the chunk, the last
/// `chunkLen` of which are the chunk.
struct SeqGeometry {
  int64_t ctxLen;
  int64_t chunkLen;
  int64_t blockSize;

  /// P: tokens before the chunk.
  int64_t prefixLen() const { return ctxLen - chunkLen; }
  /// ceil(L / bs): KV blocks holding at least one token.
  int64_t numBlocks() const { return ceilDiv(ctxLen, blockSize); }
  /// P / bs: the first KV block the chunk touches.
  int64_t firstChunkBlock() const { return prefixLen() / blockSize; }
  /// ceil(C / bs): query blocks of the chunk.
  int64_t queryBlocks() const { return ceilDiv(chunkLen, blockSize); }
  /// Chunk rows [first, end) of query block `qb`.
  int64_t queryBlockBegin(int64_t qb) const { return qb * blockSize; }
  int64_t queryBlockEnd(int64_t qb) const {
    return std::min((qb + 1) * blockSize, chunkLen);
  }
  /// The KV block holding the position of query block `qb`'s first row.
  int64_t firstOwnBlock(int64_t qb) const {
    return (prefixLen() + queryBlockBegin(qb)) / blockSize;
  }
  /// The last KV block that some query of block `qb` sees.
  int64_t lastVisibleBlock(int64_t qb) const {
    return (prefixLen() + queryBlockEnd(qb) - 1) / blockSize;
  }
  /// Some query of `qb` sees some key of `kb`.
  bool causallyValid(int64_t qb, int64_t kb) const {
    return kb <= lastVisibleBlock(qb);
  }
  /// FlashPrefill scoring: chunk row `row` scores block `kb` only once it has
  /// seen the whole block.
  bool scoreValid(int64_t row, int64_t kb) const {
    return prefixLen() + row >= (kb + 1) * blockSize - 1;
  }
  /// Tokens [begin, end) of KV block `kb`.
  int64_t blockBegin(int64_t kb) const { return kb * blockSize; }
  int64_t blockEnd(int64_t kb) const {
    return std::min((kb + 1) * blockSize, ctxLen);
  }
};

/// Which query blocks a block-table row serves. A table has T rows per
/// execution group: T = 1, the row serves every query block of the chunk (the
/// union over query blocks, the paper's table), or T = Qb, row `e * Qb + qb`
/// serves query block `qb` alone (the union over the group's heads only: with
/// s = 1 exactly the block-sparse mask). Any other T is invalid.
struct TableRows {
  int64_t perGroup;    // T
  int64_t queryBlocks; // Qb

  bool valid() const { return perGroup == 1 || perGroup == queryBlocks; }
  bool perQueryBlock() const { return perGroup != 1; }
  int64_t group(int64_t row) const { return row / perGroup; }
  /// Query blocks [first, end) of row `row`.
  int64_t firstQueryBlock(int64_t row) const { return perQueryBlock() ? row % perGroup : 0; }
  int64_t endQueryBlock(int64_t row) const {
    return perQueryBlock() ? row % perGroup + 1 : queryBlocks;
  }
  /// The row that chunk row `t` of a head of group `e` reads.
  int64_t rowOf(int64_t e, int64_t t, int64_t blockSize) const {
    return e * perGroup + (perQueryBlock() ? t / blockSize : 0);
  }
};

} // namespace compact

#endif // COMPACT_REFERENCE_GEOMETRY_H
