//===- SelectionTest.cpp - pooling, scoring and selection references -----===//

#include "Support/RandomChunk.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace compact;
using namespace compact::test;

namespace {

constexpr float kSentinel = 12345.0f;

std::vector<float> poolAll(const RandomChunk &p) {
  std::vector<float> pooled(size_t(p.shape.batch) * p.shape.kvHeads *
                                p.shape.blockCapacity * p.shape.headDim,
                            kSentinel);
  ref::poolKeys(p.shape, p.cache, p.ctxLens.data(), p.pageTable.data(),
                p.kCache.data(), pooled.data());
  return pooled;
}

TEST(PoolKeys, MeansOfTheChunkBlocksOnly) {
  std::mt19937_64 rng(11);
  for (int iter = 0; iter < 60; ++iter) {
    RandomChunk p(rng);
    std::vector<float> pooled = poolAll(p);
    const int64_t d = p.shape.headDim, cap = p.shape.blockCapacity;
    for (int64_t b = 0; b < p.shape.batch; ++b) {
      SeqGeometry g = p.seq(b);
      for (int64_t h = 0; h < p.shape.kvHeads; ++h)
        for (int64_t kb = 0; kb < cap; ++kb) {
          const float *got = pooled.data() + ((size_t(b) * p.shape.kvHeads + h) * cap + kb) * d;
          bool touched = kb >= g.firstChunkBlock() && kb < g.numBlocks();
          for (int64_t i = 0; i < d; ++i) {
            if (!touched) {
              ASSERT_EQ(got[i], kSentinel) << "block " << kb << " is not the chunk's";
              continue;
            }
            double mean = 0;
            for (int64_t j = g.blockBegin(kb); j < g.blockEnd(kb); ++j)
              mean += p.key(b, j, h)[i];
            mean /= double(g.blockEnd(kb) - g.blockBegin(kb));
            ASSERT_NEAR(got[i], mean, 1e-5);
          }
        }
    }
  }
}

TEST(PoolKeys, ChunkByChunkEqualsWholePrompt) {
  std::mt19937_64 rng(12);
  for (int iter = 0; iter < 20; ++iter) {
    RandomChunk p(rng);
    const int64_t d = p.shape.headDim, cap = p.shape.blockCapacity;
    for (int64_t b = 0; b < p.shape.batch; ++b) {
      // One sequence, prefilled in chunks of c tokens (the last one shorter),
      // against pooling the whole prompt as one chunk.
      ref::ChunkShape one = p.shape;
      one.batch = 1;
      const int32_t *pageRow = p.pageTable.data() + b * p.cache.maxPagesPerSeq;
      int64_t len = p.ctxLens[b], c = 1 + int64_t(rng() % 97);
      std::vector<float> incremental(size_t(p.shape.kvHeads) * cap * d, kSentinel);
      for (int64_t done = 0; done < len;) {
        one.chunkLen = std::min(c, len - done);
        done += one.chunkLen;
        int32_t lenNow = int32_t(done);
        ref::poolKeys(one, p.cache, &lenNow, pageRow, p.kCache.data(),
                      incremental.data());
      }
      one.chunkLen = len;
      int32_t lenAll = int32_t(len);
      std::vector<float> direct(incremental.size(), kSentinel);
      ref::poolKeys(one, p.cache, &lenAll, pageRow, p.kCache.data(), direct.data());
      for (size_t i = 0; i < direct.size(); ++i)
        ASSERT_NEAR(incremental[i], direct[i], 1e-5) << "element " << i;
    }
  }
}

/// FlashPrefill's normalised block mass S[qb][kb] for one (b, h), computed as
/// FlashPrefill defines it: a softmax over every valid (query, block) logit of
/// the query block, summed over the block's queries.
std::vector<double> flashPrefillMass(const RandomChunk &p,
                                     const std::vector<float> &pooled, int64_t b,
                                     int64_t h, int64_t qb, float scale) {
  SeqGeometry g = p.seq(b);
  const int64_t d = p.shape.headDim, cap = p.shape.blockCapacity;
  std::vector<double> mass(cap, 0.0);
  double total = 0.0;
  for (int64_t kb = 0; kb < g.numBlocks(); ++kb)
    for (int64_t i = g.queryBlockBegin(qb); i < g.queryBlockEnd(qb); ++i) {
      if (!g.scoreValid(i, kb))
        continue;
      const float *qRow = p.q.data() + ((size_t(b) * p.shape.chunkLen + i) * p.shape.qHeads + h) * d;
      const float *key = pooled.data() +
          ((size_t(b) * p.shape.kvHeads + h / p.shape.groupSize()) * cap + kb) * d;
      double logit = 0;
      for (int64_t x = 0; x < d; ++x)
        logit += double(qRow[x]) * key[x];
      double e = std::exp(scale * logit);
      mass[kb] += e;
      total += e;
    }
  for (double &m : mass)
    m = total > 0 ? m / total : 0.0;
  return mass;
}

TEST(BlockScores, RowMaxLogRuleIsFlashPrefillRule) {
  std::mt19937_64 rng(13);
  int checked = 0;
  for (int iter = 0; iter < 40; ++iter) {
    RandomChunk p(rng, 300);
    // Pool whole prompts so every block has a mean.
    ref::ChunkShape whole = p.shape;
    whole.chunkLen = *std::min_element(p.ctxLens.begin(), p.ctxLens.end());
    std::vector<float> pooled(size_t(p.shape.batch) * p.shape.kvHeads *
                              p.shape.blockCapacity * p.shape.headDim, 0.0f);
    ref::poolKeys(whole, p.cache, p.ctxLens.data(), p.pageTable.data(),
                  p.kCache.data(), pooled.data());
    float scale = 1.0f / std::sqrt(float(p.shape.headDim));
    std::vector<float> scores(p.maskSize());
    ref::blockScores(p.shape, p.ctxLens.data(), p.q.data(), pooled.data(), scale,
                     scores.data());
    const float alpha = 0.06f;
    ref::SelectionParams params{ref::ThresholdMode::RowMaxLog, alpha, 0, 0};
    std::vector<uint8_t> mask(p.maskSize());
    ref::selectBlocks(p.shape, p.ctxLens.data(), scores.data(), params, mask.data());
    const int64_t qbs = p.shape.queryBlocks(), cap = p.shape.blockCapacity;
    for (int64_t b = 0; b < p.shape.batch; ++b)
      for (int64_t h = 0; h < p.shape.qHeads; ++h)
        for (int64_t qb = 0; qb < qbs; ++qb) {
          std::vector<double> mass = flashPrefillMass(p, pooled, b, h, qb, scale);
          double maxMass = *std::max_element(mass.begin(), mass.end());
          for (int64_t kb = 0; kb < cap; ++kb) {
            double ratio = maxMass > 0 ? mass[kb] / maxMass : 0.0;
            if (std::abs(ratio - alpha) < 1e-4)
              continue; // a tie within rounding: either answer is right
            bool expected = maxMass > 0 && mass[kb] > 0 && ratio >= alpha;
            ASSERT_EQ(bool(mask[((size_t(b) * p.shape.qHeads + h) * qbs + qb) * cap + kb]),
                      expected)
                << "b " << b << " h " << h << " qb " << qb << " kb " << kb;
            ++checked;
          }
        }
  }
  EXPECT_GT(checked, 1000);
}

TEST(BlockScores, UnscorablePairsAreMinusInfinity) {
  std::mt19937_64 rng(14);
  for (int iter = 0; iter < 30; ++iter) {
    RandomChunk p(rng);
    std::vector<float> pooled = poolAll(p);
    std::vector<float> scores(p.maskSize(), 0.0f);
    ref::blockScores(p.shape, p.ctxLens.data(), p.q.data(), pooled.data(), 0.5f,
                     scores.data());
    const int64_t qbs = p.shape.queryBlocks(), cap = p.shape.blockCapacity;
    for (int64_t b = 0; b < p.shape.batch; ++b) {
      SeqGeometry g = p.seq(b);
      for (int64_t qb = 0; qb < qbs; ++qb)
        for (int64_t kb = 0; kb < cap; ++kb) {
          bool anyValid = false;
          for (int64_t i = g.queryBlockBegin(qb); i < g.queryBlockEnd(qb); ++i)
            anyValid |= kb < g.numBlocks() && g.scoreValid(i, kb);
          float s = scores[((size_t(b) * p.shape.qHeads) * qbs + qb) * cap + kb];
          if (anyValid)
            ASSERT_TRUE(std::isfinite(s));
          else
            ASSERT_EQ(s, -std::numeric_limits<float>::infinity());
        }
    }
  }
}

class SelectBlocksTest : public ::testing::Test {
protected:
  /// Random scores with some -inf; returns the mask for `params`.
  std::vector<uint8_t> select(const RandomChunk &p, const std::vector<float> &scores,
                              ref::SelectionParams params) {
    std::vector<uint8_t> mask(p.maskSize(), 77);
    ref::selectBlocks(p.shape, p.ctxLens.data(), scores.data(), params, mask.data());
    return mask;
  }
  std::vector<float> randomScores(const RandomChunk &p, std::mt19937_64 &rng) {
    std::vector<float> scores(p.maskSize());
    std::normal_distribution<float> normal(0.0f, 3.0f);
    for (float &s : scores)
      s = rng() % 10 == 0 ? -std::numeric_limits<float>::infinity() : normal(rng);
    return scores;
  }
};

TEST_F(SelectBlocksTest, SinkWindowThresholdAndCausality) {
  std::mt19937_64 rng(15);
  for (int iter = 0; iter < 200; ++iter) {
    RandomChunk p(rng);
    std::vector<float> scores = randomScores(p, rng);
    ref::SelectionParams params;
    params.mode = ref::ThresholdMode(rng() % 3);
    params.threshold = params.mode == ref::ThresholdMode::Absolute
                           ? float(int(rng() % 7) - 3)
                           : 0.01f + float(rng() % 99) / 100.0f;
    params.sink = int64_t(rng() % 4);
    params.window = int64_t(rng() % 4);
    std::vector<uint8_t> mask = select(p, scores, params);
    const int64_t qbs = p.shape.queryBlocks(), cap = p.shape.blockCapacity;
    for (int64_t b = 0; b < p.shape.batch; ++b) {
      SeqGeometry g = p.seq(b);
      for (int64_t h = 0; h < p.shape.qHeads; ++h)
        for (int64_t qb = 0; qb < qbs; ++qb) {
          size_t row = ((size_t(b) * p.shape.qHeads + h) * qbs + qb) * cap;
          int64_t last = g.lastVisibleBlock(qb);
          float rowMax = -std::numeric_limits<float>::infinity();
          for (int64_t kb = 0; kb <= last; ++kb)
            rowMax = std::max(rowMax, scores[row + kb]);
          for (int64_t kb = 0; kb < cap; ++kb) {
            uint8_t m = mask[row + kb];
            ASSERT_TRUE(m == 0 || m == 1);
            if (kb > last) {
              ASSERT_EQ(m, 0) << "causally invalid pair selected";
              continue;
            }
            if (kb < params.sink || kb > last - params.window)
              ASSERT_EQ(m, 1) << "sink / window block " << kb;
            // The best block passes a relative rule (linear scores are
            // meant to be non-negative, like gate probabilities).
            bool relative = params.mode == ref::ThresholdMode::RowMaxLog ||
                            (params.mode == ref::ThresholdMode::RowMax && rowMax >= 0);
            if (relative && scores[row + kb] == rowMax && std::isfinite(rowMax))
              ASSERT_EQ(m, 1) << "the row's best block";
            if (scores[row + kb] == -std::numeric_limits<float>::infinity() &&
                kb >= params.sink && kb <= last - params.window)
              ASSERT_EQ(m, 0) << "-inf never passes";
          }
        }
    }
  }
}

TEST_F(SelectBlocksTest, LowerThresholdSelectsSuperset) {
  std::mt19937_64 rng(16);
  for (int iter = 0; iter < 100; ++iter) {
    RandomChunk p(rng);
    std::vector<float> scores = randomScores(p, rng);
    ref::SelectionParams hi{ref::ThresholdMode::RowMaxLog, 0.5f, 1, 1};
    ref::SelectionParams lo = hi;
    lo.threshold = 0.05f;
    std::vector<uint8_t> a = select(p, scores, hi), b = select(p, scores, lo);
    for (size_t i = 0; i < a.size(); ++i)
      ASSERT_LE(a[i], b[i]);
  }
}

TEST_F(SelectBlocksTest, LinearAndLogRulesAgree) {
  std::mt19937_64 rng(17);
  for (int iter = 0; iter < 100; ++iter) {
    RandomChunk p(rng);
    std::vector<float> logScores = randomScores(p, rng);
    std::vector<float> linScores(logScores.size());
    for (size_t i = 0; i < logScores.size(); ++i)
      linScores[i] = std::exp(double(logScores[i]) / 8.0);
    for (float &s : logScores)
      s = s / 8.0f;
    ref::SelectionParams logRule{ref::ThresholdMode::RowMaxLog, 0.3f, 0, 0};
    ref::SelectionParams linRule{ref::ThresholdMode::RowMax, 0.3f, 0, 0};
    std::vector<uint8_t> a = select(p, logScores, logRule);
    std::vector<uint8_t> b = select(p, linScores, linRule);
    size_t differ = 0;
    for (size_t i = 0; i < a.size(); ++i)
      differ += a[i] != b[i] && linScores[i] > 0;
    // Only rounding ties at exactly the threshold may differ.
    EXPECT_LE(differ, a.size() / 1000 + 1);
  }
}

} // namespace
