//===- BlockUnionTest.cpp - properties of the block-union reference ------===//
//
// The table of an execution group must hold every block that some query row
// of the group selected (coverage), nothing else but the row's chunk blocks
// (the whole chunk, or a query block's diagonal; minimality), in ascending order, with -1 padding and a matching count.
//
//===----------------------------------------------------------------------===//

#include "Support/RandomChunk.h"

#include <gtest/gtest.h>

#include <set>

using namespace compact;
using namespace compact::test;

namespace {

struct Tables {
  std::vector<int32_t> table, counts;
};

/// Tables of `rowsPerGroup` rows per execution group (1, or Qb).
Tables runUnion(const RandomChunk &p, const std::vector<uint8_t> &mask,
                int64_t s, int64_t rowsPerGroup = 1) {
  Tables t;
  int64_t rows = p.shape.qHeads / s * rowsPerGroup;
  t.table.assign(size_t(p.shape.batch) * rows * p.shape.blockCapacity, 7777);
  t.counts.assign(size_t(p.shape.batch) * rows, 7777);
  ref::blockUnion(p.shape, p.ctxLens.data(), mask.data(), s, t.table.data(),
                  t.counts.data(), rowsPerGroup);
  return t;
}

std::vector<uint8_t> randomMask(const RandomChunk &p, std::mt19937_64 &rng,
                                double density) {
  std::vector<uint8_t> mask(p.maskSize());
  std::bernoulli_distribution coin(density);
  for (uint8_t &m : mask)
    m = coin(rng) ? uint8_t(1 + rng() % 255) : 0; // any nonzero byte selects
  return mask;
}

/// The blocks of group `e` of sequence `b` that some causally valid
/// (head, query block in [qbBegin, qbEnd)) pair of the mask selected.
std::set<int64_t> selectedBlocks(const RandomChunk &p,
                                 const std::vector<uint8_t> &mask, int64_t b,
                                 int64_t e, int64_t s, int64_t qbBegin, int64_t qbEnd) {
  std::set<int64_t> out;
  SeqGeometry g = p.seq(b);
  int64_t qbs = p.shape.queryBlocks(), cap = p.shape.blockCapacity;
  for (int64_t h = e * s; h < (e + 1) * s; ++h)
    for (int64_t qb = qbBegin; qb < qbEnd; ++qb)
      for (int64_t kb = 0; kb < cap; ++kb)
        if (g.causallyValid(qb, kb) &&
            mask[((size_t(b) * p.shape.qHeads + h) * qbs + qb) * cap + kb])
          out.insert(kb);
  return out;
}

void checkTables(const RandomChunk &p, const std::vector<uint8_t> &mask,
                 int64_t s, const Tables &t, int64_t rowsPerGroup = 1) {
  const TableRows layout{rowsPerGroup, p.shape.queryBlocks()};
  int64_t rows = p.shape.qHeads / s * rowsPerGroup, cap = p.shape.blockCapacity;
  for (int64_t b = 0; b < p.shape.batch; ++b) {
    SeqGeometry g = p.seq(b);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t e = layout.group(r);
      const int64_t qbBegin = layout.firstQueryBlock(r), qbEnd = layout.endQueryBlock(r);
      const int32_t *row = t.table.data() + (size_t(b) * rows + r) * cap;
      int32_t count = t.counts[b * rows + r];
      ASSERT_GE(count, 0);
      ASSERT_LE(count, cap);
      std::set<int64_t> inTable;
      for (int32_t i = 0; i < count; ++i) {
        ASSERT_GE(row[i], 0);
        ASSERT_LT(row[i], g.numBlocks()) << "entry beyond the context";
        if (i > 0)
          ASSERT_LT(row[i - 1], row[i]) << "entries must ascend";
        inTable.insert(row[i]);
      }
      for (int64_t i = count; i < cap; ++i)
        ASSERT_EQ(row[i], -1) << "padding";
      std::set<int64_t> selected = selectedBlocks(p, mask, b, e, s, qbBegin, qbEnd);
      for (int64_t kb : selected)
        ASSERT_TRUE(inTable.count(kb)) << "coverage: selected block " << kb;
      // The chunk blocks from the row's first query's block to the last one
      // its queries see: the whole chunk with one row per group, the query
      // block's diagonal with one row per query block.
      const int64_t chunkBegin = g.firstOwnBlock(qbBegin);
      const int64_t chunkEnd = g.lastVisibleBlock(qbEnd - 1) + 1;
      if (rowsPerGroup == 1)
        ASSERT_EQ(chunkBegin, g.firstChunkBlock());
      for (int64_t kb = chunkBegin; kb < chunkEnd; ++kb)
        ASSERT_TRUE(inTable.count(kb)) << "the row's chunk block " << kb;
      for (int64_t kb : inTable)
        ASSERT_TRUE(selected.count(kb) || (kb >= chunkBegin && kb < chunkEnd))
            << "minimality: block " << kb << " was selected by nobody";
    }
  }
}

TEST(BlockUnion, PropertiesOnRandomShapes) {
  std::mt19937_64 rng(1);
  for (int iter = 0; iter < 300; ++iter) {
    RandomChunk p(rng);
    double density = std::initializer_list<double>{0.0, 0.01, 0.1, 0.5, 1.0}
                         .begin()[rng() % 5];
    std::vector<uint8_t> mask = randomMask(p, rng, density);
    int64_t s = p.randomExecGroup(rng);
    SCOPED_TRACE(::testing::Message() << "iter " << iter << " s " << s
                                      << " density " << density);
    checkTables(p, mask, s, runUnion(p, mask, s));
  }
}

TEST(BlockUnion, EmptySelectionKeepsExactlyTheChunk) {
  std::mt19937_64 rng(2);
  for (int iter = 0; iter < 50; ++iter) {
    RandomChunk p(rng);
    std::vector<uint8_t> mask(p.maskSize(), 0);
    int64_t s = p.randomExecGroup(rng);
    Tables t = runUnion(p, mask, s);
    int64_t groups = p.shape.qHeads / s;
    for (int64_t b = 0; b < p.shape.batch; ++b) {
      SeqGeometry g = p.seq(b);
      for (int64_t e = 0; e < groups; ++e) {
        ASSERT_EQ(t.counts[b * groups + e], g.numBlocks() - g.firstChunkBlock());
        ASSERT_EQ(t.table[(size_t(b) * groups + e) * p.shape.blockCapacity],
                  g.firstChunkBlock());
      }
    }
  }
}

TEST(BlockUnion, FullSelectionIsEveryBlock) {
  std::mt19937_64 rng(3);
  for (int iter = 0; iter < 50; ++iter) {
    RandomChunk p(rng);
    std::vector<uint8_t> mask(p.maskSize(), 1);
    int64_t s = p.randomExecGroup(rng);
    Tables t = runUnion(p, mask, s);
    Tables full;
    full.table.resize(t.table.size());
    full.counts.resize(t.counts.size());
    ref::fullBlockTable(p.shape, p.ctxLens.data(), s, full.table.data(),
                        full.counts.data());
    EXPECT_EQ(t.table, full.table);
    EXPECT_EQ(t.counts, full.counts);
  }
}

TEST(BlockUnion, CausallyInvalidPairsDoNotCount) {
  std::mt19937_64 rng(4);
  for (int iter = 0; iter < 100; ++iter) {
    RandomChunk p(rng);
    std::vector<uint8_t> mask = randomMask(p, rng, 0.3);
    std::vector<uint8_t> causal = mask;
    int64_t qbs = p.shape.queryBlocks(), cap = p.shape.blockCapacity;
    for (int64_t b = 0; b < p.shape.batch; ++b)
      for (int64_t h = 0; h < p.shape.qHeads; ++h)
        for (int64_t qb = 0; qb < qbs; ++qb)
          for (int64_t kb = 0; kb < cap; ++kb)
            if (!p.seq(b).causallyValid(qb, kb))
              causal[((size_t(b) * p.shape.qHeads + h) * qbs + qb) * cap + kb] = 0;
    int64_t s = p.randomExecGroup(rng);
    Tables a = runUnion(p, mask, s), c = runUnion(p, causal, s);
    EXPECT_EQ(a.table, c.table);
    EXPECT_EQ(a.counts, c.counts);
  }
}

TEST(BlockUnion, GroupTableIsUnionOfSubGroupTables) {
  std::mt19937_64 rng(5);
  for (int iter = 0; iter < 100; ++iter) {
    RandomChunk p(rng);
    std::vector<uint8_t> mask = randomMask(p, rng, 0.05);
    int64_t g = p.shape.groupSize();
    Tables whole = runUnion(p, mask, g), perHead = runUnion(p, mask, 1);
    int64_t cap = p.shape.blockCapacity;
    for (int64_t b = 0; b < p.shape.batch; ++b)
      for (int64_t kv = 0; kv < p.shape.kvHeads; ++kv) {
        std::set<int32_t> fromHeads;
        for (int64_t h = kv * g; h < (kv + 1) * g; ++h) {
          size_t row = (size_t(b) * p.shape.qHeads + h) * cap;
          fromHeads.insert(perHead.table.begin() + row,
                           perHead.table.begin() + row + perHead.counts[b * p.shape.qHeads + h]);
        }
        size_t row = (size_t(b) * p.shape.kvHeads + kv) * cap;
        std::set<int32_t> grouped(whole.table.begin() + row,
                                  whole.table.begin() + row + whole.counts[b * p.shape.kvHeads + kv]);
        EXPECT_EQ(grouped, fromHeads);
      }
  }
}

TEST(BlockUnion, PerQueryBlockTablesOnRandomShapes) {
  std::mt19937_64 rng(6);
  for (int iter = 0; iter < 300; ++iter) {
    RandomChunk p(rng);
    double density = std::initializer_list<double>{0.0, 0.05, 0.3, 1.0}.begin()[rng() % 4];
    std::vector<uint8_t> mask = randomMask(p, rng, density);
    int64_t s = p.randomExecGroup(rng), qbs = p.shape.queryBlocks();
    SCOPED_TRACE(::testing::Message() << "iter " << iter << " s " << s << " Qb " << qbs);
    checkTables(p, mask, s, runUnion(p, mask, s, qbs), qbs);
  }
}

TEST(BlockUnion, QueryBlockRowsUnionToTheGroupRow) {
  // The union over query blocks, taken afterwards: the group's table is the
  // set union of its per-query-block tables.
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 100; ++iter) {
    RandomChunk p(rng);
    std::vector<uint8_t> mask = randomMask(p, rng, 0.1);
    int64_t s = p.randomExecGroup(rng), qbs = p.shape.queryBlocks();
    int64_t groups = p.shape.qHeads / s, cap = p.shape.blockCapacity;
    Tables whole = runUnion(p, mask, s), perBlock = runUnion(p, mask, s, qbs);
    for (int64_t b = 0; b < p.shape.batch; ++b)
      for (int64_t e = 0; e < groups; ++e) {
        std::set<int32_t> fromBlocks;
        for (int64_t qb = 0; qb < qbs; ++qb) {
          size_t r = size_t(b) * groups * qbs + e * qbs + qb;
          fromBlocks.insert(perBlock.table.begin() + r * cap,
                            perBlock.table.begin() + r * cap + perBlock.counts[r]);
        }
        size_t r = size_t(b) * groups + e;
        std::set<int32_t> grouped(whole.table.begin() + r * cap,
                                  whole.table.begin() + r * cap + whole.counts[r]);
        EXPECT_EQ(grouped, fromBlocks);
      }
  }
}

TEST(BlockUnion, PerHeadQueryBlockRowIsTheMaskRow) {
  // s = 1, one table per query block: the row is the mask row itself (its
  // causally valid part) plus the query block's diagonal (the blocks holding
  // its rows' positions).
  std::mt19937_64 rng(8);
  for (int iter = 0; iter < 100; ++iter) {
    RandomChunk p(rng);
    std::vector<uint8_t> mask = randomMask(p, rng, 0.2);
    int64_t qbs = p.shape.queryBlocks(), cap = p.shape.blockCapacity, hq = p.shape.qHeads;
    Tables t = runUnion(p, mask, 1, qbs);
    for (int64_t b = 0; b < p.shape.batch; ++b) {
      SeqGeometry g = p.seq(b);
      for (int64_t h = 0; h < hq; ++h)
        for (int64_t qb = 0; qb < qbs; ++qb) {
          size_t r = (size_t(b) * hq + h) * qbs + qb;
          std::vector<int32_t> expect;
          for (int64_t kb = 0; kb <= g.lastVisibleBlock(qb); ++kb)
            if (mask[r * cap + kb] || kb >= g.firstOwnBlock(qb))
              expect.push_back(int32_t(kb));
          std::vector<int32_t> got(t.table.begin() + r * cap,
                                   t.table.begin() + r * cap + t.counts[r]);
          EXPECT_EQ(got, expect) << "b " << b << " h " << h << " qb " << qb;
        }
    }
  }
}

} // namespace
