//===- ChooseExecGroupsTest.cpp - the execution-group cost model ----------===//
//
// compact.choose_exec_groups keeps each head's blocks (rows only grow), gives
// the heads of a chosen sub-group one table, stays within its budget, and
// picks the widest sub-group that fits: slack 0 leaves per-head tables as
// they are, an unbounded slack gives every head its KV group's union.
//
//===----------------------------------------------------------------------===//

#include "Support/RandomChunk.h"

#include <gtest/gtest.h>

#include <set>

using namespace compact;
using namespace compact::test;

namespace {

struct HeadTables {
  int64_t rowsPerHead, rows, cap;
  std::vector<int32_t> table, counts;

  std::set<int32_t> row(int64_t b, int64_t r) const {
    const int32_t *p = table.data() + (b * rows + r) * cap;
    return std::set<int32_t>(p, p + counts[b * rows + r]);
  }
};

/// Random ascending per-head rows; heads of a group overlap by construction.
HeadTables randomTables(const RandomChunk &p, std::mt19937_64 &rng) {
  HeadTables t;
  t.rowsPerHead = rng() % 2 ? p.shape.queryBlocks() : 1;
  t.rows = p.shape.qHeads * t.rowsPerHead;
  t.cap = p.shape.blockCapacity;
  t.table.assign(size_t(p.shape.batch * t.rows * t.cap), -1);
  t.counts.assign(size_t(p.shape.batch * t.rows), 0);
  for (int64_t b = 0; b < p.shape.batch; ++b)
    for (int64_t r = 0; r < t.rows; ++r) {
      int32_t n = 0;
      const int keepOneIn = 1 + int(rng() % 5);
      for (int64_t kb = 0; kb < t.cap; ++kb)
        if (kb % 3 == 0 || rng() % keepOneIn == 0)
          t.table[(b * t.rows + r) * t.cap + n++] = int32_t(kb);
      t.counts[b * t.rows + r] = n;
    }
  return t;
}

HeadTables choose(const RandomChunk &p, HeadTables t, float slack) {
  ref::chooseExecGroups(p.shape, t.rowsPerHead, slack, t.table.data(), t.counts.data());
  return t;
}

/// sum over sub-groups of s of s * |union of the sub-group's rows in `t`|.
int64_t cost(const RandomChunk &p, const HeadTables &t, int64_t b, int64_t kv, int64_t row,
             int64_t s) {
  const int64_t g = p.shape.groupSize();
  int64_t sum = 0;
  for (int64_t first = kv * g; first < (kv + 1) * g; first += s) {
    std::set<int32_t> u;
    for (int64_t h = first; h < first + s; ++h) {
      std::set<int32_t> r = t.row(b, h * t.rowsPerHead + row);
      u.insert(r.begin(), r.end());
    }
    sum += s * int64_t(u.size());
  }
  return sum;
}

TEST(ChooseExecGroups, RowsGrowSubGroupsShareAndTheWidestAffordableWins) {
  std::mt19937_64 rng(11);
  for (int iter = 0; iter < 200; ++iter) {
    RandomChunk p(rng);
    const float slack = std::initializer_list<float>{0.1f, 0.5f, 1.0f, 2.0f}.begin()[rng() % 4];
    HeadTables in = randomTables(p, rng), out = choose(p, in, slack);
    const int64_t g = p.shape.groupSize();
    SCOPED_TRACE(::testing::Message() << "iter " << iter << " G " << g << " slack " << slack);
    for (int64_t b = 0; b < p.shape.batch; ++b)
      for (int64_t kv = 0; kv < p.shape.kvHeads; ++kv)
        for (int64_t row = 0; row < in.rowsPerHead; ++row) {
          auto rowOf = [&](int64_t h) { return (kv * g + h) * in.rowsPerHead + row; };
          // The widest sub-group size within (1 + slack) of the per-head cost.
          const float limit = (1.0f + slack) * float(cost(p, in, b, kv, row, 1));
          int64_t s = 1;
          for (int64_t wider = 2; wider <= g; ++wider)
            if (g % wider == 0 && float(cost(p, in, b, kv, row, wider)) <= limit)
              s = wider;
          for (int64_t h = 0; h < g; ++h) {
            std::set<int32_t> expected;
            for (int64_t o = h - h % s; o < h - h % s + s; ++o) {
              std::set<int32_t> r = in.row(b, rowOf(o));
              expected.insert(r.begin(), r.end());
            }
            ASSERT_EQ(out.row(b, rowOf(h)), expected) << "head " << h << " s " << s;
            const int32_t *entries = out.table.data() + (b * out.rows + rowOf(h)) * out.cap;
            const int64_t n = out.counts[b * out.rows + rowOf(h)];
            for (int64_t i = 1; i < n; ++i)
              ASSERT_LT(entries[i - 1], entries[i]) << "ascending";
            for (int64_t i = n; i < out.cap; ++i)
              ASSERT_EQ(entries[i], -1) << "padding";
          }
          // Each head walks its sub-group's union: the cost the model priced.
          EXPECT_EQ(cost(p, out, b, kv, row, 1), cost(p, in, b, kv, row, s));
          EXPECT_LE(float(cost(p, out, b, kv, row, 1)), limit);
        }
  }
}

TEST(ChooseExecGroups, ZeroSlackKeepsPerHeadTables) {
  std::mt19937_64 rng(12);
  for (int iter = 0; iter < 100; ++iter) {
    RandomChunk p(rng);
    HeadTables in = randomTables(p, rng), out = choose(p, in, 0.0f);
    EXPECT_EQ(out.table, in.table);
    EXPECT_EQ(out.counts, in.counts);
  }
}

TEST(ChooseExecGroups, UnboundedSlackGivesTheGroupUnion) {
  std::mt19937_64 rng(13);
  for (int iter = 0; iter < 100; ++iter) {
    RandomChunk p(rng);
    HeadTables in = randomTables(p, rng), out = choose(p, in, 1e9f);
    const int64_t g = p.shape.groupSize();
    for (int64_t b = 0; b < p.shape.batch; ++b)
      for (int64_t h = 0; h < p.shape.qHeads; ++h)
        for (int64_t row = 0; row < in.rowsPerHead; ++row) {
          std::set<int32_t> u;
          for (int64_t o = h - h % g; o < h - h % g + g; ++o) {
            std::set<int32_t> r = in.row(b, o * in.rowsPerHead + row);
            u.insert(r.begin(), r.end());
          }
          EXPECT_EQ(out.row(b, h * in.rowsPerHead + row), u);
        }
  }
}

} // namespace
