//===- AttentionTest.cpp - paged attention and append references ---------===//
//
// The paged-attention reference against a direct masked softmax over
// contiguous K/V: the cache is filled from contiguous data by append_kv, and
// the direct computation never looks at pages.
//
//===----------------------------------------------------------------------===//

#include "Support/RandomChunk.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>

using namespace compact;
using namespace compact::test;

namespace {

/// Contiguous K/V [B, Lmax, Hkv, D] written into `p`'s cache with append_kv
/// in random chunk steps (one sequence at a time, so each has its own steps).
struct ContiguousKV {
  int64_t maxLen;
  std::vector<float> k, v;
  const float *at(const std::vector<float> &x, const RandomChunk &p, int64_t b,
                  int64_t pos, int64_t h) const {
    return x.data() + ((size_t(b) * maxLen + pos) * p.shape.kvHeads + h) * p.shape.headDim;
  }
};

ContiguousKV fillCache(RandomChunk &p, std::mt19937_64 &rng) {
  ContiguousKV kv;
  kv.maxLen = *std::max_element(p.ctxLens.begin(), p.ctxLens.end());
  const int64_t hkv = p.shape.kvHeads, d = p.shape.headDim;
  std::normal_distribution<float> normal;
  kv.k.resize(size_t(p.shape.batch) * kv.maxLen * hkv * d);
  kv.v.resize(kv.k.size());
  for (float &x : kv.k)
    x = normal(rng);
  for (float &x : kv.v)
    x = normal(rng);
  std::fill(p.kCache.begin(), p.kCache.end(), std::nanf(""));
  std::fill(p.vCache.begin(), p.vCache.end(), std::nanf(""));
  for (int64_t b = 0; b < p.shape.batch; ++b) {
    ref::ChunkShape one = p.shape;
    one.batch = 1;
    const int32_t *pageRow = p.pageTable.data() + b * p.cache.maxPagesPerSeq;
    int64_t len = p.ctxLens[b], c = 1 + int64_t(rng() % 150);
    for (int64_t done = 0; done < len;) {
      one.chunkLen = std::min(c, len - done);
      const float *kSrc = kv.at(kv.k, p, b, done, 0);
      const float *vSrc = kv.at(kv.v, p, b, done, 0);
      done += one.chunkLen;
      int32_t lenNow = int32_t(done);
      ref::appendKV(one, p.cache, &lenNow, pageRow, kSrc, vSrc, p.kCache.data(),
                    p.vCache.data());
    }
  }
  return kv;
}

/// Direct attention of row (b, t, h) over contiguous K/V with the keys that
/// `allowed` admits; returns the lse (-inf for an empty row).
double directRow(const RandomChunk &p, const ContiguousKV &kv, int64_t b,
                 int64_t t, int64_t h, float scale,
                 const std::function<bool(int64_t)> &allowed, float *out) {
  const int64_t d = p.shape.headDim, kvHead = h / p.shape.groupSize();
  const int64_t len = p.ctxLens[b], pos = len - p.shape.chunkLen + t;
  const float *qRow = p.q.data() + ((size_t(b) * p.shape.chunkLen + t) * p.shape.qHeads + h) * d;
  std::vector<double> logit(len, -std::numeric_limits<double>::infinity());
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < len; ++j) {
    if (j > pos || !allowed(j))
      continue;
    const float *key = kv.at(kv.k, p, b, j, kvHead);
    double acc = 0;
    for (int64_t x = 0; x < d; ++x)
      acc += double(qRow[x]) * key[x];
    logit[j] = scale * acc;
    m = std::max(m, logit[j]);
  }
  if (m == -std::numeric_limits<double>::infinity()) {
    std::fill(out, out + d, 0.0f);
    return m;
  }
  double sum = 0;
  std::vector<double> acc(d, 0.0);
  for (int64_t j = 0; j < len; ++j) {
    double w = std::exp(logit[j] - m);
    sum += w;
    if (w == 0)
      continue;
    const float *val = kv.at(kv.v, p, b, j, kvHead);
    for (int64_t x = 0; x < d; ++x)
      acc[x] += w * val[x];
  }
  for (int64_t x = 0; x < d; ++x)
    out[x] = float(acc[x] / sum);
  return m + std::log(sum);
}

/// Random (sorted, distinct) tables with random counts, including empty ones;
/// `rowsPerGroup` rows per execution group.
void randomTables(const RandomChunk &p, int64_t s, std::mt19937_64 &rng,
                  std::vector<int32_t> &table, std::vector<int32_t> &counts,
                  int64_t rowsPerGroup = 1) {
  int64_t groups = p.shape.qHeads / s * rowsPerGroup, cap = p.shape.blockCapacity;
  table.assign(size_t(p.shape.batch) * groups * cap, -1);
  counts.assign(size_t(p.shape.batch) * groups, 0);
  for (int64_t b = 0; b < p.shape.batch; ++b)
    for (int64_t e = 0; e < groups; ++e) {
      int32_t n = 0;
      int keepOneIn = 1 + int(rng() % 4);
      for (int64_t kb = 0; kb < p.seq(b).numBlocks(); ++kb)
        if (rng() % keepOneIn == 0)
          table[(size_t(b) * groups + e) * cap + n++] = int32_t(kb);
      counts[b * groups + e] = n;
    }
}

TEST(PagedAttention, MatchesDirectMaskedSoftmax) {
  std::mt19937_64 rng(21);
  for (int iter = 0; iter < 120; ++iter) {
    RandomChunk p(rng, 400);
    ContiguousKV kv = fillCache(p, rng);
    int64_t s = p.randomExecGroup(rng);
    // One table per group, or one per group and query block.
    const TableRows layout{rng() % 2 ? p.shape.queryBlocks() : 1, p.shape.queryBlocks()};
    const int64_t rows = p.shape.qHeads / s * layout.perGroup;
    std::vector<int32_t> table, counts;
    randomTables(p, s, rng, table, counts, layout.perGroup);
    float scale = 0.3f + float(rng() % 100) / 100.0f;
    size_t outSize = p.q.size();
    std::vector<float> out(outSize, std::nanf("")),
        lse(size_t(p.shape.batch) * p.shape.qHeads * p.shape.chunkLen, std::nanf(""));
    ref::pagedAttention(p.shape, p.cache, p.ctxLens.data(), p.pageTable.data(),
                        p.q.data(), p.kCache.data(), p.vCache.data(), table.data(),
                        counts.data(), s, scale, out.data(), lse.data(), layout.perGroup);
    std::vector<float> expect(outSize);
    const int64_t d = p.shape.headDim, cap = p.shape.blockCapacity;
    for (int64_t b = 0; b < p.shape.batch; ++b)
      for (int64_t h = 0; h < p.shape.qHeads; ++h)
        for (int64_t t = 0; t < p.shape.chunkLen; ++t) {
          size_t r = size_t(b) * rows + layout.rowOf(h / s, t, p.shape.blockSize);
          std::set<int64_t> blocks(table.begin() + r * cap, table.begin() + r * cap + counts[r]);
          auto allowed = [&](int64_t j) { return blocks.count(j / p.shape.blockSize) > 0; };
          double l = directRow(p, kv, b, t, h, scale, allowed,
                               expect.data() + ((size_t(b) * p.shape.chunkLen + t) * p.shape.qHeads + h) * d);
          float got = lse[(size_t(b) * p.shape.qHeads + h) * p.shape.chunkLen + t];
          if (std::isinf(l))
            ASSERT_EQ(got, -std::numeric_limits<float>::infinity());
          else
            ASSERT_NEAR(got, l, 1e-4 * std::max(1.0, std::abs(l)));
        }
    for (float x : out)
      ASSERT_FALSE(std::isnan(x)) << "unwritten or NaN output";
    EXPECT_LT(ref::relativeError(out.data(), expect.data(), outSize), 1e-6)
        << "iter " << iter;
  }
}

TEST(PagedAttention, DenseTableIsCausalAttention) {
  std::mt19937_64 rng(22);
  for (int iter = 0; iter < 40; ++iter) {
    RandomChunk p(rng, 300);
    ContiguousKV kv = fillCache(p, rng);
    int64_t s = p.randomExecGroup(rng), groups = p.shape.qHeads / s;
    std::vector<int32_t> table(size_t(p.shape.batch) * groups * p.shape.blockCapacity);
    std::vector<int32_t> counts(size_t(p.shape.batch) * groups);
    ref::fullBlockTable(p.shape, p.ctxLens.data(), s, table.data(), counts.data());
    std::vector<float> out(p.q.size()), expect(p.q.size());
    float scale = 1.0f / std::sqrt(float(p.shape.headDim));
    ref::pagedAttention(p.shape, p.cache, p.ctxLens.data(), p.pageTable.data(),
                        p.q.data(), p.kCache.data(), p.vCache.data(), table.data(),
                        counts.data(), s, scale, out.data(), nullptr);
    const int64_t d = p.shape.headDim;
    for (int64_t b = 0; b < p.shape.batch; ++b)
      for (int64_t h = 0; h < p.shape.qHeads; ++h)
        for (int64_t t = 0; t < p.shape.chunkLen; ++t)
          directRow(p, kv, b, t, h, scale, [](int64_t) { return true; },
                    expect.data() + ((size_t(b) * p.shape.chunkLen + t) * p.shape.qHeads + h) * d);
    EXPECT_LT(ref::relativeError(out.data(), expect.data(), out.size()), 1e-6);
  }
}

TEST(PagedAttention, LayoutsAgree) {
  std::mt19937_64 rng(23);
  for (int iter = 0; iter < 20; ++iter) {
    RandomChunk p(rng, 200);
    std::mt19937_64 fillRng(rng());
    RandomChunk other = p;
    other.cache.layout = p.cache.layout == ref::KVLayout::NHD ? ref::KVLayout::HND
                                                              : ref::KVLayout::NHD;
    std::mt19937_64 rngA(iter), rngB(iter);
    fillCache(p, rngA);
    fillCache(other, rngB);
    int64_t s = p.shape.groupSize(), groups = p.shape.qHeads / s;
    std::vector<int32_t> table(size_t(p.shape.batch) * groups * p.shape.blockCapacity);
    std::vector<int32_t> counts(size_t(p.shape.batch) * groups);
    ref::fullBlockTable(p.shape, p.ctxLens.data(), s, table.data(), counts.data());
    std::vector<float> a(p.q.size()), b(p.q.size());
    for (RandomChunk *x : {&p, &other})
      ref::pagedAttention(x->shape, x->cache, x->ctxLens.data(), x->pageTable.data(),
                          x->q.data(), x->kCache.data(), x->vCache.data(), table.data(),
                          counts.data(), s, 0.125f, x == &p ? a.data() : b.data(), nullptr);
    EXPECT_EQ(a, b);
  }
}

TEST(AppendKV, WritesOnlyTheChunkSlots) {
  std::mt19937_64 rng(24);
  for (int iter = 0; iter < 50; ++iter) {
    RandomChunk p(rng);
    std::vector<float> k0 = p.kCache, v0 = p.vCache;
    const int64_t hkv = p.shape.kvHeads, d = p.shape.headDim, c = p.shape.chunkLen;
    std::vector<float> kNew(size_t(p.shape.batch) * c * hkv * d), vNew(kNew.size());
    std::normal_distribution<float> normal;
    for (float &x : kNew)
      x = normal(rng);
    for (float &x : vNew)
      x = normal(rng);
    ref::appendKV(p.shape, p.cache, p.ctxLens.data(), p.pageTable.data(), kNew.data(),
                  vNew.data(), p.kCache.data(), p.vCache.data());
    std::vector<uint8_t> written(p.kCache.size(), 0);
    for (int64_t b = 0; b < p.shape.batch; ++b)
      for (int64_t t = 0; t < c; ++t)
        for (int64_t h = 0; h < hkv; ++h) {
          int64_t pos = p.seq(b).prefixLen() + t;
          size_t off = p.cache.tokenOffset(p.pageTable.data(), b, pos, h);
          size_t src = ((size_t(b) * c + t) * hkv + h) * d;
          for (int64_t x = 0; x < d; ++x) {
            ASSERT_EQ(p.kCache[off + x], kNew[src + x]);
            ASSERT_EQ(p.vCache[off + x], vNew[src + x]);
            written[off + x] = 1;
          }
        }
    for (size_t i = 0; i < written.size(); ++i)
      if (!written[i]) {
        ASSERT_EQ(p.kCache[i], k0[i]) << "key slot " << i << " overwritten";
        ASSERT_EQ(p.vCache[i], v0[i]) << "value slot " << i << " overwritten";
      }
  }
}

} // namespace
