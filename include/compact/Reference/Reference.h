//===- Reference.h - C++ reference semantics of the compact ops -*- C++ -*-===//
//
// The oracle every later test compares with: plain loops, fp32 storage,
// double accumulation. Layouts are those of the dialect (row-major):
//   q, out      [B, C, Hq, D]          lse          [B, Hq, C]
//   k/v cache   [pages, PS, Hkv, D] (NHD) or [pages, Hkv, PS, D] (HND)
//   page table  [B, maxPages]          ctx_lens     [B]
//   pooled      [B, Hkv, Kb, D]        scores, mask [B, Hq, Qb, Kb]
//   table       [B, E * T, Kb]         counts       [B, E * T]
// with E = Hq / s execution groups and T table rows per group (TableRows:
// 1, or Qb for one table per query block).
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_REFERENCE_REFERENCE_H
#define COMPACT_REFERENCE_REFERENCE_H

#include "compact/Reference/Geometry.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace compact::ref {

enum class KVLayout { NHD, HND };
enum class ThresholdMode { RowMaxLog, RowMax, Absolute };

/// Shapes of one chunk step of a batch.
struct ChunkShape {
  int64_t batch = 1;
  int64_t chunkLen = 0;
  int64_t qHeads = 0;
  int64_t kvHeads = 0;
  int64_t headDim = 0;
  int64_t blockSize = 128;
  /// Kb: the KV-block dimension of pooled keys, scores, masks and tables.
  int64_t blockCapacity = 0;

  int64_t groupSize() const { return qHeads / kvHeads; }
  int64_t queryBlocks() const { return ceilDiv(chunkLen, blockSize); }
  SeqGeometry seq(const int32_t *ctxLens, int64_t b) const {
    return {ctxLens[b], chunkLen, blockSize};
  }
};

/// A paged KV cache (one of K or V) and the page tables that index it.
struct PagedCache {
  KVLayout layout = KVLayout::NHD;
  int64_t numPages = 0;
  int64_t pageSize = 0;
  int64_t kvHeads = 0;
  int64_t headDim = 0;
  /// Row length of the page table.
  int64_t maxPagesPerSeq = 0;

  size_t numElements() const {
    return size_t(numPages) * pageSize * kvHeads * headDim;
  }
  /// Element offset of (page, slot, head, 0).
  size_t offset(int64_t page, int64_t slot, int64_t head) const {
    if (layout == KVLayout::NHD)
      return ((size_t(page) * pageSize + slot) * kvHeads + head) * headDim;
    return ((size_t(page) * kvHeads + head) * pageSize + slot) * headDim;
  }
  /// Element offset of token `pos` of sequence `b`, KV head `head`.
  size_t tokenOffset(const int32_t *pageTable, int64_t b, int64_t pos,
                     int64_t head) const {
    int64_t page = pageTable[b * maxPagesPerSeq + pos / pageSize];
    return offset(page, pos % pageSize, head);
  }
};

struct SelectionParams {
  ThresholdMode mode = ThresholdMode::RowMaxLog;
  float threshold = 0.06f;
  int64_t sink = 0;
  int64_t window = 0;
};

/// compact.append_kv: write the chunk's K/V ([B, C, Hkv, D]) into the cache.
void appendKV(const ChunkShape &shape, const PagedCache &cache,
              const int32_t *ctxLens, const int32_t *pageTable,
              const float *kNew, const float *vNew, float *kCache,
              float *vCache);

/// compact.pool_keys: mean-pool the key blocks the chunk touched.
void poolKeys(const ChunkShape &shape, const PagedCache &cache,
              const int32_t *ctxLens, const int32_t *pageTable,
              const float *kCache, float *pooled);

/// compact.block_scores: FlashPrefill log-mass of every block pair.
void blockScores(const ChunkShape &shape, const int32_t *ctxLens,
                 const float *q, const float *pooled, float scale,
                 float *scores);

/// compact.select_blocks: threshold + sink + window into a 0/1 mask.
void selectBlocks(const ChunkShape &shape, const int32_t *ctxLens,
                  const float *scores, const SelectionParams &params,
                  uint8_t *mask);

/// compact.block_union: per execution group (s heads), and per query block
/// when `rowsPerGroup` is Qb, the ascending table of selected blocks plus the
/// chunk blocks from its first query's block to its last visible one (T = 1:
/// all the chunk's blocks); -1 padding.
void blockUnion(const ChunkShape &shape, const int32_t *ctxLens,
                const uint8_t *mask, int64_t execGroupSize, int32_t *table,
                int32_t *counts, int64_t rowsPerGroup = 1);

/// compact.paged_attention over block tables. `lse` may be null.
void pagedAttention(const ChunkShape &shape, const PagedCache &cache,
                    const int32_t *ctxLens, const int32_t *pageTable,
                    const float *q, const float *kCache, const float *vCache,
                    const int32_t *table, const int32_t *counts,
                    int64_t execGroupSize, float scale, float *out,
                    float *lse, int64_t rowsPerGroup = 1);

/// compact.choose_exec_groups: per-head tables ([B, Hq * rowsPerHead, Kb],
/// row h * rowsPerHead + t) rewritten, per (sequence, KV group, t), as the
/// unions of the largest sub-group size s' dividing G whose cost
/// sum_J s' |union J| is within (1 + slack) of the per-head cost. Returns
/// nothing; the rows of groups that keep s' = 1 are untouched.
void chooseExecGroups(const ChunkShape &shape, int64_t rowsPerHead, float slack,
                      int32_t *table, int32_t *counts);

/// A block table that holds every block of every sequence (dense attention),
/// in each of its rows.
void fullBlockTable(const ChunkShape &shape, const int32_t *ctxLens,
                    int64_t execGroupSize, int32_t *table, int32_t *counts,
                    int64_t rowsPerGroup = 1);

/// ||a - b|| / ||b|| over n elements (double accumulation).
double relativeError(const float *a, const float *b, size_t n);

} // namespace compact::ref

#endif // COMPACT_REFERENCE_REFERENCE_H
