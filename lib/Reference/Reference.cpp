//===- Reference.cpp - C++ reference semantics of the compact ops --------===//
//
// Straightforward loops, written for clarity: each function is the
// definition of its op in CompactOps.td, in code.
//
//===----------------------------------------------------------------------===//

#include "compact/Reference/Reference.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace compact::ref {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

/// Reference preconditions are programming errors of the caller: stop loudly.
void require(bool cond, const char *what) {
  if (!cond) {
    std::fprintf(stderr, "compact reference: precondition failed: %s\n", what);
    std::abort();
  }
}

/// Dot product accumulated in fp64 from i = 0 up: selection decisions depend on
/// the exact bits, and the CPU lowering sums in this order too.
double dotInOrder(const float *a, const float *b, int64_t n) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i)
    acc += double(a[i]) * double(b[i]);
  return acc;
}

/// fp64 dot product in any order (vectorised): for attention, where only the
/// value matters.
double dot(const float *a, const float *b, int64_t n) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i)
    acc += double(a[i]) * double(b[i]);
  return acc;
}

/// The bound a score must reach in `mode`, given the row max.
float selectionBound(const SelectionParams &p, float rowMax) {
  switch (p.mode) {
  case ThresholdMode::RowMaxLog:
    return rowMax + std::log(p.threshold);
  case ThresholdMode::RowMax:
    return p.threshold * rowMax;
  case ThresholdMode::Absolute:
    return p.threshold;
  }
  return p.threshold;
}

} // namespace

void appendKV(const ChunkShape &shape, const PagedCache &cache,
              const int32_t *ctxLens, const int32_t *pageTable,
              const float *kNew, const float *vNew, float *kCache,
              float *vCache) {
  const int64_t hkv = shape.kvHeads, d = shape.headDim;
  for (int64_t b = 0; b < shape.batch; ++b) {
    SeqGeometry g = shape.seq(ctxLens, b);
    require(g.prefixLen() >= 0, "ctx_len >= chunk_len");
    for (int64_t t = 0; t < shape.chunkLen; ++t)
      for (int64_t h = 0; h < hkv; ++h) {
        size_t src = ((size_t(b) * shape.chunkLen + t) * hkv + h) * d;
        size_t dst = cache.tokenOffset(pageTable, b, g.prefixLen() + t, h);
        for (int64_t i = 0; i < d; ++i) {
          kCache[dst + i] = kNew[src + i];
          vCache[dst + i] = vNew[src + i];
        }
      }
  }
}

void poolKeys(const ChunkShape &shape, const PagedCache &cache,
              const int32_t *ctxLens, const int32_t *pageTable,
              const float *kCache, float *pooled) {
  const int64_t hkv = shape.kvHeads, d = shape.headDim, kbCap = shape.blockCapacity;
  std::vector<double> sum(d);
  for (int64_t b = 0; b < shape.batch; ++b) {
    SeqGeometry g = shape.seq(ctxLens, b);
    require(g.numBlocks() <= kbCap, "ceil(ctx_len / block_size) <= Kb");
    for (int64_t kb = g.firstChunkBlock(); kb < g.numBlocks(); ++kb)
      for (int64_t h = 0; h < hkv; ++h) {
        std::fill(sum.begin(), sum.end(), 0.0);
        for (int64_t j = g.blockBegin(kb); j < g.blockEnd(kb); ++j) {
          const float *k = kCache + cache.tokenOffset(pageTable, b, j, h);
          for (int64_t i = 0; i < d; ++i)
            sum[i] += k[i];
        }
        double n = double(g.blockEnd(kb) - g.blockBegin(kb));
        float *dst = pooled + ((size_t(b) * hkv + h) * kbCap + kb) * d;
        for (int64_t i = 0; i < d; ++i)
          dst[i] = float(sum[i] / n);
      }
  }
}

void blockScores(const ChunkShape &shape, const int32_t *ctxLens,
                 const float *q, const float *pooled, float scale,
                 float *scores) {
  const int64_t hq = shape.qHeads, hkv = shape.kvHeads, d = shape.headDim;
  const int64_t qbCount = shape.queryBlocks(), kbCap = shape.blockCapacity;
  const int64_t groupSize = shape.groupSize();
  std::vector<double> logits;
  for (int64_t b = 0; b < shape.batch; ++b) {
    SeqGeometry g = shape.seq(ctxLens, b);
    for (int64_t h = 0; h < hq; ++h)
      for (int64_t qb = 0; qb < qbCount; ++qb)
        for (int64_t kb = 0; kb < kbCap; ++kb) {
          logits.clear();
          if (kb < g.numBlocks()) {
            const float *key =
                pooled + ((size_t(b) * hkv + h / groupSize) * kbCap + kb) * d;
            for (int64_t i = g.queryBlockBegin(qb); i < g.queryBlockEnd(qb); ++i)
              if (g.scoreValid(i, kb))
                logits.push_back(
                    double(scale) *
                    dotInOrder(q + ((size_t(b) * shape.chunkLen + i) * hq + h) * d, key, d));
          }
          double lse = kNegInf;
          if (!logits.empty()) {
            double m = *std::max_element(logits.begin(), logits.end());
            double s = 0.0;
            for (double x : logits)
              s += std::exp(x - m);
            lse = m + std::log(s);
          }
          scores[((size_t(b) * hq + h) * qbCount + qb) * kbCap + kb] = float(lse);
        }
  }
}

void selectBlocks(const ChunkShape &shape, const int32_t *ctxLens,
                  const float *scores, const SelectionParams &params,
                  uint8_t *mask) {
  const int64_t hq = shape.qHeads, qbCount = shape.queryBlocks();
  const int64_t kbCap = shape.blockCapacity;
  for (int64_t b = 0; b < shape.batch; ++b) {
    SeqGeometry g = shape.seq(ctxLens, b);
    require(g.numBlocks() <= kbCap, "ceil(ctx_len / block_size) <= Kb");
    for (int64_t h = 0; h < hq; ++h)
      for (int64_t qb = 0; qb < qbCount; ++qb) {
        size_t row = ((size_t(b) * hq + h) * qbCount + qb) * kbCap;
        int64_t last = g.lastVisibleBlock(qb);
        float rowMax = -std::numeric_limits<float>::infinity();
        for (int64_t kb = 0; kb <= last; ++kb)
          rowMax = std::max(rowMax, scores[row + kb]);
        float bound = selectionBound(params, rowMax);
        for (int64_t kb = 0; kb < kbCap; ++kb) {
          float s = scores[row + kb];
          bool passes = s >= bound && s != -std::numeric_limits<float>::infinity();
          bool keep = kb <= last && (passes || kb < params.sink ||
                                     kb > last - params.window);
          mask[row + kb] = keep ? 1 : 0;
        }
      }
  }
}

namespace {
/// The ascending list of the blocks flagged in `in` into a table row of
/// `in.size()` entries, -1 padding; returns the count.
int32_t writeTableRow(const std::vector<uint8_t> &in, int32_t *dst) {
  int32_t n = 0;
  for (size_t kb = 0; kb < in.size(); ++kb)
    if (in[kb])
      dst[n++] = int32_t(kb);
  std::fill(dst + n, dst + in.size(), -1);
  return n;
}
} // namespace

void blockUnion(const ChunkShape &shape, const int32_t *ctxLens,
                const uint8_t *mask, int64_t execGroupSize, int32_t *table,
                int32_t *counts, int64_t rowsPerGroup) {
  const int64_t hq = shape.qHeads, qbCount = shape.queryBlocks();
  const int64_t kbCap = shape.blockCapacity;
  require(shape.groupSize() % execGroupSize == 0, "s divides G");
  const TableRows rows{rowsPerGroup, qbCount};
  require(rows.valid(), "rows per group is 1 or Qb");
  const int64_t numRows = hq / execGroupSize * rowsPerGroup;
  std::vector<uint8_t> in(kbCap);
  for (int64_t b = 0; b < shape.batch; ++b) {
    SeqGeometry g = shape.seq(ctxLens, b);
    require(g.numBlocks() <= kbCap, "ceil(ctx_len / block_size) <= Kb");
    for (int64_t row = 0; row < numRows; ++row) {
      const int64_t e = rows.group(row);
      const int64_t qbBegin = rows.firstQueryBlock(row), qbEnd = rows.endQueryBlock(row);
      std::fill(in.begin(), in.end(), 0);
      for (int64_t h = e * execGroupSize; h < (e + 1) * execGroupSize; ++h)
        for (int64_t qb = qbBegin; qb < qbEnd; ++qb) {
          const uint8_t *maskRow = mask + ((size_t(b) * hq + h) * qbCount + qb) * kbCap;
          for (int64_t kb = 0; kb <= g.lastVisibleBlock(qb); ++kb)
            in[kb] |= maskRow[kb] != 0;
        }
      // The chunk blocks from the one holding the row's first query to the
      // last one its queries see (with T = 1: all the chunk's blocks).
      for (int64_t kb = g.firstOwnBlock(qbBegin); kb <= g.lastVisibleBlock(qbEnd - 1); ++kb)
        in[kb] = 1;
      counts[b * numRows + row] = writeTableRow(in, table + (size_t(b) * numRows + row) * kbCap);
    }
  }
}

void chooseExecGroups(const ChunkShape &shape, int64_t rowsPerHead, float slack,
                      int32_t *table, int32_t *counts) {
  const int64_t hq = shape.qHeads, g = shape.groupSize(), kbCap = shape.blockCapacity;
  const int64_t numRows = hq * rowsPerHead;
  std::vector<uint8_t> in(kbCap);
  for (int64_t b = 0; b < shape.batch; ++b)
    for (int64_t kv = 0; kv < shape.kvHeads; ++kv)
      for (int64_t t = 0; t < rowsPerHead; ++t) {
        auto rowOf = [&](int64_t h) { return b * numRows + h * rowsPerHead + t; };
        // The union of heads [first, first + n) in `in`; its size.
        auto unionOf = [&](int64_t first, int64_t n) {
          std::fill(in.begin(), in.end(), 0);
          for (int64_t h = first; h < first + n; ++h) {
            const int64_t count = std::min<int64_t>(std::max(counts[rowOf(h)], 0), kbCap);
            for (int64_t i = 0; i < count; ++i) {
              const int32_t kb = table[rowOf(h) * kbCap + i];
              if (kb >= 0 && kb < kbCap)
                in[kb] = 1;
            }
          }
          return std::count(in.begin(), in.end(), 1);
        };
        auto cost = [&](int64_t s) {
          int64_t sum = 0;
          for (int64_t j = 0; j < g / s; ++j)
            sum += s * unionOf(kv * g + j * s, s);
          return sum;
        };
        // The comparison in fp32, as the generated code makes it.
        const float limit = (1.0f + slack) * float(cost(1));
        int64_t chosen = 1;
        for (int64_t s = 2; s <= g; ++s)
          if (g % s == 0 && float(cost(s)) <= limit)
            chosen = s;
        if (chosen == 1)
          continue;
        for (int64_t first = kv * g; first < (kv + 1) * g; first += chosen) {
          unionOf(first, chosen);
          for (int64_t h = first; h < first + chosen; ++h)
            counts[rowOf(h)] = writeTableRow(in, table + rowOf(h) * kbCap);
        }
      }
}

void pagedAttention(const ChunkShape &shape, const PagedCache &cache,
                    const int32_t *ctxLens, const int32_t *pageTable,
                    const float *q, const float *kCache, const float *vCache,
                    const int32_t *table, const int32_t *counts,
                    int64_t execGroupSize, float scale, float *out,
                    float *lse, int64_t rowsPerGroup) {
  const int64_t hq = shape.qHeads, d = shape.headDim, c = shape.chunkLen;
  const int64_t kbCap = shape.blockCapacity;
  const int64_t groupSize = shape.groupSize();
  const TableRows rows{rowsPerGroup, shape.queryBlocks()};
  require(rows.valid(), "rows per group is 1 or Qb");
  const int64_t numRows = hq / execGroupSize * rowsPerGroup;
  std::vector<double> logits, acc(d);
  std::vector<size_t> keyOffsets;
  for (int64_t b = 0; b < shape.batch; ++b) {
    SeqGeometry g = shape.seq(ctxLens, b);
    for (int64_t h = 0; h < hq; ++h) {
      int64_t e = h / execGroupSize, kv = h / groupSize;
      for (int64_t t = 0; t < c; ++t) {
        int64_t row = rows.rowOf(e, t, shape.blockSize);
        const int32_t *blocks = table + (size_t(b) * numRows + row) * kbCap;
        int32_t count = counts[b * numRows + row];
        require(count >= 0 && count <= kbCap, "0 <= block count <= Kb");
        int64_t pos = g.prefixLen() + t;
        const float *qRow = q + ((size_t(b) * c + t) * hq + h) * d;
        logits.clear();
        keyOffsets.clear();
        for (int32_t i = 0; i < count; ++i) {
          int64_t kb = blocks[i];
          require(kb >= 0 && kb < g.numBlocks(), "table entries < ceil(L / bs)");
          for (int64_t j = g.blockBegin(kb); j < std::min(g.blockEnd(kb), pos + 1); ++j) {
            size_t off = cache.tokenOffset(pageTable, b, j, kv);
            keyOffsets.push_back(off);
            logits.push_back(double(scale) * dot(qRow, kCache + off, d));
          }
        }
        float *oRow = out + ((size_t(b) * c + t) * hq + h) * d;
        float *lseOut = lse ? lse + (size_t(b) * hq + h) * c + t : nullptr;
        if (logits.empty()) {
          std::fill(oRow, oRow + d, 0.0f);
          if (lseOut)
            *lseOut = -std::numeric_limits<float>::infinity();
          continue;
        }
        double m = *std::max_element(logits.begin(), logits.end());
        double sum = 0.0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (size_t j = 0; j < logits.size(); ++j) {
          double p = std::exp(logits[j] - m);
          sum += p;
          const float *v = vCache + keyOffsets[j];
          for (int64_t i = 0; i < d; ++i)
            acc[i] += p * v[i];
        }
        for (int64_t i = 0; i < d; ++i)
          oRow[i] = float(acc[i] / sum);
        if (lseOut)
          *lseOut = float(m + std::log(sum));
      }
    }
  }
}

void fullBlockTable(const ChunkShape &shape, const int32_t *ctxLens,
                    int64_t execGroupSize, int32_t *table, int32_t *counts,
                    int64_t rowsPerGroup) {
  const int64_t kbCap = shape.blockCapacity;
  const int64_t groups = shape.qHeads / execGroupSize * rowsPerGroup;
  for (int64_t b = 0; b < shape.batch; ++b) {
    int64_t n = shape.seq(ctxLens, b).numBlocks();
    require(n <= kbCap, "ceil(ctx_len / block_size) <= Kb");
    for (int64_t e = 0; e < groups; ++e) {
      int32_t *dst = table + (size_t(b) * groups + e) * kbCap;
      for (int64_t i = 0; i < kbCap; ++i)
        dst[i] = i < n ? int32_t(i) : -1;
      counts[b * groups + e] = int32_t(n);
    }
  }
}

double relativeError(const float *a, const float *b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; ++i) {
    double diff = double(a[i]) - double(b[i]);
    num += diff * diff;
    den += double(b[i]) * double(b[i]);
  }
  if (den == 0.0)
    return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

} // namespace compact::ref
