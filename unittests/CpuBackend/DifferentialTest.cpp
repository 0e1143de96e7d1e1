//===- DifferentialTest.cpp - the CPU lowering against the C++ reference --===//
//
// Random shapes and inputs go through the compiled program (compact ->
// scf/vector -> LLVM, JIT) and through the reference: caches, pooled keys,
// scores, masks and tables must be bit-identical; attention within 1e-5
// (fp32) of the fp64 reference.
//
//===----------------------------------------------------------------------===//

#include "Support/RandomChunk.h"

#include "compact/CpuRunner/CpuProgram.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

using namespace compact;
using namespace compact::cpu;
using namespace compact::test;

namespace {

template <typename T>
Tensor<T> tensor(std::vector<int64_t> shape, const std::vector<T> &data) {
  Tensor<T> t(std::move(shape));
  EXPECT_EQ(t.size(), data.size());
  t.data = data;
  return t;
}

/// Bitwise float comparison (NaN-safe, -0 != +0 is fine: both sides compute
/// the same ops).
bool sameBits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

class CpuDifferential : public ::testing::TestWithParam<int> {
protected:
  void SetUp() override { rng.seed(1000 + GetParam()); }
  std::mt19937_64 rng;
};

TEST_P(CpuDifferential, MatchesReference) {
  RandomChunk p(rng, 600);
  ProgramConfig config;
  config.qHeads = p.shape.qHeads;
  config.kvHeads = p.shape.kvHeads;
  config.headDim = p.shape.headDim;
  config.pageSize = p.cache.pageSize;
  config.blockSize = p.shape.blockSize;
  config.execGroupSize = p.randomExecGroup(rng);
  config.layout = p.cache.layout;
  config.selection.mode = ref::ThresholdMode(rng() % 3);
  config.selection.threshold = config.selection.mode == ref::ThresholdMode::Absolute
                                   ? float(int(rng() % 5) - 2)
                                   : 0.02f + float(rng() % 60) / 100.0f;
  config.selection.sink = int64_t(rng() % 3);
  config.groupSlack = std::initializer_list<float>{0.0f, 0.25f, 1.0f, 3.0f}.begin()[rng() % 4];
  config.selection.window = int64_t(rng() % 3);
  config.rowTile = 1 + int64_t(rng() % 20);
  // One table per execution group, or one per group and query block.
  const int64_t rowsPerGroup = rng() % 2 ? p.shape.queryBlocks() : 1;
  SCOPED_TRACE(::testing::Message()
               << "B " << p.shape.batch << " C " << p.shape.chunkLen << " Hq "
               << p.shape.qHeads << " Hkv " << p.shape.kvHeads << " D " << p.shape.headDim
               << " PS " << p.cache.pageSize << " bs " << p.shape.blockSize << " s "
               << config.execGroupSize << " Kb " << p.shape.blockCapacity << " layout "
               << int(p.cache.layout) << " row tile " << config.rowTile << " table rows per group "
               << rowsPerGroup);
  auto compiled = CpuProgram::compile(config);
  ASSERT_TRUE(bool(compiled)) << llvm::toString(compiled.takeError());
  CpuProgram &program = **compiled;

  const int64_t B = p.shape.batch, C = p.shape.chunkLen, hq = p.shape.qHeads;
  const int64_t hkv = p.shape.kvHeads, d = p.shape.headDim, cap = p.shape.blockCapacity;
  const int64_t qbs = p.shape.queryBlocks(), E = config.groups() * rowsPerGroup;
  std::vector<int64_t> cacheShape =
      p.cache.layout == ref::KVLayout::NHD
          ? std::vector<int64_t>{p.cache.numPages, p.cache.pageSize, hkv, d}
          : std::vector<int64_t>{p.cache.numPages, hkv, p.cache.pageSize, d};
  Tensor<int32_t> lens = tensor({B}, p.ctxLens);
  Tensor<int32_t> pageTable = tensor({B, p.cache.maxPagesPerSeq}, p.pageTable);

  // Pooled keys of everything before the chunk, as earlier chunks left them.
  std::vector<float> refPooled(size_t(B) * hkv * cap * d, 0.0f);
  {
    ref::ChunkShape all = p.shape;
    all.chunkLen = 0;
    for (int64_t b = 0; b < B; ++b) {
      ref::ChunkShape one = all;
      one.batch = 1;
      one.chunkLen = p.ctxLens[b] - C;
      int32_t len = int32_t(one.chunkLen);
      if (len > 0)
        ref::poolKeys(one, p.cache, &len, p.pageTable.data() + b * p.cache.maxPagesPerSeq,
                      p.kCache.data(), refPooled.data() + size_t(b) * hkv * cap * d);
    }
  }

  // append_kv + pool_keys.
  std::normal_distribution<float> normal;
  Tensor<float> kNew({B, C, hkv, d}), vNew({B, C, hkv, d});
  for (float &x : kNew.data)
    x = normal(rng);
  for (float &x : vNew.data)
    x = normal(rng);
  Tensor<float> kCache = tensor(cacheShape, p.kCache), vCache = tensor(cacheShape, p.vCache);
  Tensor<float> pooled = tensor({B, hkv, cap, d}, refPooled);
  ASSERT_FALSE(bool(program.appendAndPool(kNew, vNew, kCache, vCache, pageTable, lens, pooled)));
  ref::appendKV(p.shape, p.cache, p.ctxLens.data(), p.pageTable.data(), kNew.data.data(),
                vNew.data.data(), p.kCache.data(), p.vCache.data());
  ref::poolKeys(p.shape, p.cache, p.ctxLens.data(), p.pageTable.data(), p.kCache.data(),
                refPooled.data());
  EXPECT_TRUE(sameBits(kCache.data, p.kCache)) << "key cache";
  EXPECT_TRUE(sameBits(vCache.data, p.vCache)) << "value cache";
  EXPECT_TRUE(sameBits(pooled.data, refPooled)) << "pooled keys";

  // Selection, unfused and fused.
  const float scale = 1.0f / std::sqrt(float(d));
  Tensor<float> q = tensor({B, C, hq, d}, p.q);
  Tensor<float> scores({B, hq, qbs, cap});
  Tensor<int8_t> mask({B, hq, qbs, cap}, int8_t(77));
  Tensor<int32_t> table({B, E, cap}, 7777), counts({B, E}, 7777);
  ASSERT_FALSE(bool(program.select(q, pooled, lens, scores, mask, table, counts)));
  std::vector<float> refScores(scores.size());
  ref::blockScores(p.shape, p.ctxLens.data(), p.q.data(), refPooled.data(), scale,
                   refScores.data());
  std::vector<uint8_t> refMask(mask.size());
  ref::selectBlocks(p.shape, p.ctxLens.data(), refScores.data(), config.selection,
                    refMask.data());
  std::vector<int32_t> refTable(table.size()), refCounts(counts.size());
  ref::blockUnion(p.shape, p.ctxLens.data(), refMask.data(), config.execGroupSize,
                  refTable.data(), refCounts.data(), rowsPerGroup);
  EXPECT_TRUE(sameBits(scores.data, refScores)) << "block scores";
  EXPECT_TRUE(std::equal(mask.data.begin(), mask.data.end(), refMask.begin(),
                         [](int8_t a, uint8_t b) { return uint8_t(a) == b; }))
      << "block mask";
  EXPECT_EQ(table.data, refTable);
  EXPECT_EQ(counts.data, refCounts);

  Tensor<int32_t> fusedTable({B, E, cap}, 7777), fusedCounts({B, E}, 7777);
  ASSERT_FALSE(bool(program.selectFused(q, pooled, lens, fusedTable, fusedCounts)));
  EXPECT_EQ(fusedTable.data, refTable) << "fused selection";
  EXPECT_EQ(fusedCounts.data, refCounts) << "fused selection";

  // Thresholds of external scores (with -inf), and unions of external masks.
  Tensor<float> gate({B, hq, qbs, cap});
  for (float &x : gate.data)
    x = rng() % 8 == 0 ? -std::numeric_limits<float>::infinity() : normal(rng);
  if (config.selection.mode == ref::ThresholdMode::RowMax)
    for (float &x : gate.data)
      x = std::exp(x);
  Tensor<int32_t> gateTable({B, E, cap}, 7777), gateCounts({B, E}, 7777);
  ASSERT_FALSE(bool(program.selectExternal(gate, lens, C, gateTable, gateCounts)));
  std::vector<uint8_t> gateMask(gate.size());
  ref::selectBlocks(p.shape, p.ctxLens.data(), gate.data.data(), config.selection,
                    gateMask.data());
  ref::blockUnion(p.shape, p.ctxLens.data(), gateMask.data(), config.execGroupSize,
                  refTable.data(), refCounts.data(), rowsPerGroup);
  EXPECT_EQ(gateTable.data, refTable) << "external scores";
  EXPECT_EQ(gateCounts.data, refCounts) << "external scores";

  for (double density : {0.0, 0.05, 0.5}) {
    Tensor<int8_t> userMask({B, hq, qbs, cap});
    std::bernoulli_distribution coin(density);
    for (int8_t &m : userMask.data)
      m = coin(rng) ? int8_t(1 + rng() % 100) : 0;
    std::vector<uint8_t> asBytes(userMask.data.begin(), userMask.data.end());
    Tensor<int32_t> maskTable({B, E, cap}, 7777), maskCounts({B, E}, 7777);
    ASSERT_FALSE(bool(program.unionOfMask(userMask, lens, C, maskTable, maskCounts)));
    ref::blockUnion(p.shape, p.ctxLens.data(), asBytes.data(), config.execGroupSize,
                    refTable.data(), refCounts.data(), rowsPerGroup);
    EXPECT_EQ(maskTable.data, refTable) << "mask density " << density;
    EXPECT_EQ(maskCounts.data, refCounts) << "mask density " << density;
  }

  // The execution-group cost model on per-head tables: random ascending
  // rows, some shared by every head of a group, some with bad entries.
  {
    const int64_t rowsPerHead = rng() % 2 ? qbs : 1, rows = hq * rowsPerHead;
    Tensor<int32_t> headTable({B, rows, cap}, -1), headCounts({B, rows}, 0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t r = 0; r < rows; ++r) {
        int32_t *row = headTable.data.data() + (b * rows + r) * cap;
        const int64_t g = p.shape.groupSize(), head = r / rowsPerHead;
        const bool sameAsFirst = head % g != 0 && rng() % 3 == 0;
        if (sameAsFirst) {
          const int64_t first = (head - head % g) * rowsPerHead + r % rowsPerHead;
          std::copy_n(headTable.data.data() + (b * rows + first) * cap, cap, row);
          headCounts.data[b * rows + r] = headCounts.data[b * rows + first];
          continue;
        }
        int32_t n = 0;
        const int keepOneIn = 1 + int(rng() % 6);
        for (int64_t kb = 0; kb < cap; ++kb)
          if (rng() % keepOneIn == 0)
            row[n++] = int32_t(kb);
        headCounts.data[b * rows + r] = n;
        if (rng() % 8 == 0 && n > 0)
          row[rng() % n] = rng() % 2 ? -5 : int32_t(cap + 3); // ignored, not a block
        if (rng() % 16 == 0)
          headCounts.data[b * rows + r] = rng() % 2 ? -1 : int32_t(cap + 9); // clamped
      }
    std::vector<int32_t> refHeadTable = headTable.data, refHeadCounts = headCounts.data;
    ASSERT_FALSE(bool(program.chooseExecGroups(headTable, headCounts)));
    ref::chooseExecGroups(p.shape, rowsPerHead, config.groupSlack, refHeadTable.data(),
                          refHeadCounts.data());
    EXPECT_EQ(headTable.data, refHeadTable) << "choose_exec_groups";
    EXPECT_EQ(headCounts.data, refHeadCounts) << "choose_exec_groups";
  }

  // Attention over the selection's tables and over random tables (some
  // empty), with poisoned outputs.
  for (int variant = 0; variant < 2; ++variant) {
    Tensor<int32_t> attnTable = table, attnCounts = counts;
    if (variant == 1)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t e = 0; e < E; ++e) {
          int32_t n = 0;
          int keepOneIn = int(rng() % 4);
          for (int64_t kb = 0; kb < p.seq(b).numBlocks(); ++kb)
            if (keepOneIn != 0 && rng() % keepOneIn == 0)
              attnTable.data[(b * E + e) * cap + n++] = int32_t(kb);
          attnCounts.data[b * E + e] = n;
        }
    Tensor<float> out({B, C, hq, d}, std::nanf("")), lse({B, hq, C}, std::nanf(""));
    ASSERT_FALSE(bool(program.attention(q, kCache, vCache, pageTable, lens, attnTable,
                                        attnCounts, out, lse)));
    std::vector<float> refOut(out.size()), refLse(lse.size());
    ref::pagedAttention(p.shape, p.cache, p.ctxLens.data(), p.pageTable.data(), p.q.data(),
                        p.kCache.data(), p.vCache.data(), attnTable.data.data(),
                        attnCounts.data.data(), config.execGroupSize, scale, refOut.data(),
                        refLse.data(), rowsPerGroup);
    for (float x : out.data)
      ASSERT_FALSE(std::isnan(x)) << "NaN or unwritten output, variant " << variant;
    EXPECT_LE(ref::relativeError(out.data.data(), refOut.data(), out.size()), 1e-5)
        << "variant " << variant;
    for (size_t i = 0; i < lse.size(); ++i) {
      if (std::isinf(refLse[i]))
        ASSERT_EQ(lse.data[i], refLse[i]) << "lse " << i;
      else
        ASSERT_NEAR(lse.data[i], refLse[i], 1e-4 * std::max(1.0f, std::abs(refLse[i])));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(RandomShapes, CpuDifferential, ::testing::Range(0, 24));

TEST(CpuBf16, AttentionWithinBf16Tolerance) {
  std::mt19937_64 rng(77);
  for (int iter = 0; iter < 3; ++iter) {
    RandomChunk p(rng, 300);
    for (std::vector<float> *x : {&p.q, &p.kCache, &p.vCache})
      ref::roundToBF16(*x);
    ProgramConfig config;
    config.qHeads = p.shape.qHeads;
    config.kvHeads = p.shape.kvHeads;
    config.headDim = p.shape.headDim;
    config.pageSize = p.cache.pageSize;
    config.blockSize = p.shape.blockSize;
    config.execGroupSize = p.shape.groupSize();
    config.layout = p.cache.layout;
    config.dtype = DataType::BF16;
    auto compiled = CpuProgram::compile(config);
    ASSERT_TRUE(bool(compiled)) << llvm::toString(compiled.takeError());
    const int64_t B = p.shape.batch, C = p.shape.chunkLen, hq = p.shape.qHeads;
    const int64_t d = p.shape.headDim, cap = p.shape.blockCapacity, E = config.groups();
    std::vector<int64_t> cacheShape =
        p.cache.layout == ref::KVLayout::NHD
            ? std::vector<int64_t>{p.cache.numPages, p.cache.pageSize, p.shape.kvHeads, d}
            : std::vector<int64_t>{p.cache.numPages, p.shape.kvHeads, p.cache.pageSize, d};
    Tensor<int32_t> table({B, E, cap}), counts({B, E});
    ref::fullBlockTable(p.shape, p.ctxLens.data(), config.execGroupSize, table.data.data(),
                        counts.data.data());
    Tensor<float> out({B, C, hq, d}, std::nanf("")), lse({B, hq, C});
    ASSERT_FALSE(bool((*compiled)->attention(
        tensor({B, C, hq, d}, p.q), tensor(cacheShape, p.kCache), tensor(cacheShape, p.vCache),
        tensor({B, p.cache.maxPagesPerSeq}, p.pageTable), tensor({B}, p.ctxLens), table, counts,
        out, lse)));
    std::vector<float> refOut(out.size());
    ref::pagedAttention(p.shape, p.cache, p.ctxLens.data(), p.pageTable.data(), p.q.data(),
                        p.kCache.data(), p.vCache.data(), table.data.data(), counts.data.data(),
                        config.execGroupSize, 1.0f / std::sqrt(float(d)), refOut.data(), nullptr);
    EXPECT_LE(ref::relativeError(out.data.data(), refOut.data(), out.size()), 1e-2);
  }
}

} // namespace
