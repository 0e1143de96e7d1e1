//===- ChecksTest.cpp - debug checks of metadata and tables, no writes ----===//
//
// With compact_rt_set_checks, every call validates the context lengths, page
// tables and block tables it reads before it launches anything. In a dry run
// those arrays are host memory, so each class of bad data is checked here
// without a GPU: the call fails with a message naming the entry, and the
// launch log stays empty (nothing would have been written).
//
//===----------------------------------------------------------------------===//

#include "compact_rt.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

void *fake(uintptr_t n) { return reinterpret_cast<void *>(uintptr_t(1) << 32 | n << 12); }

class Checks : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_EQ(compact_rt_create_dry_run(&ctx), COMPACT_RT_OK);
    ASSERT_EQ(compact_rt_set_checks(ctx, 1), COMPACT_RT_OK);
    // Two sequences of 256 and 192 tokens: 4 and 3 pages, 2 KV blocks each.
    lens = {256, 192};
    pages = {0, 1, 2, 3, 4, 5, 6, -1};
    // s = 4: 4 execution groups per sequence, each holding both blocks.
    table.assign(2 * 4 * 2, 0);
    for (size_t row = 0; row < 8; ++row)
      table[row * 2 + 1] = 1;
    counts.assign(8, 2);
  }
  void TearDown() override { compact_rt_destroy(ctx); }
  std::string log() const { return compact_rt_dry_run_log(ctx); }

  compact_rt_status append() {
    return compact_rt_append_kv(ctx, &config, &shape, fake(1), fake(2), pages.data(),
                                lens.data(), fake(3), fake(4), nullptr);
  }
  compact_rt_status attention() {
    return compact_rt_paged_attention(ctx, &config, &shape, 4, fake(1), fake(2), fake(3),
                                      pages.data(), lens.data(), table.data(), counts.data(),
                                      0.0f, fake(4), nullptr, nullptr);
  }
  /// `status` is INVALID_ARGUMENT, the message has `expect`, nothing launched.
  void expectRejected(compact_rt_status status, const std::string &expect) {
    EXPECT_EQ(status, COMPACT_RT_INVALID_ARGUMENT);
    std::string message = compact_rt_last_error();
    EXPECT_NE(message.find(expect), std::string::npos) << message;
    EXPECT_EQ(log(), "") << "a rejected call launched kernels";
  }

  compact_rt_context *ctx = nullptr;
  compact_rt_config config{16, 4, 128, 64, 128, COMPACT_RT_BF16, COMPACT_RT_NHD};
  // B 2, C 128, 16 pages, 4 pages per sequence, Kb 2.
  compact_rt_shape shape{2, 128, 16, 4, 2, 0};
  std::vector<int32_t> lens, pages, table, counts;
};

TEST_F(Checks, ValidMetadataAndTablesLaunch) {
  ASSERT_EQ(append(), COMPACT_RT_OK) << compact_rt_last_error();
  ASSERT_EQ(attention(), COMPACT_RT_OK) << compact_rt_last_error();
  EXPECT_NE(log().find("append_kv_append"), std::string::npos);
  EXPECT_NE(log().find("paged_attention_attention"), std::string::npos);
  EXPECT_EQ(compact_rt_check_metadata(ctx, &config, &shape, pages.data(), lens.data(), nullptr),
            COMPACT_RT_OK);
  EXPECT_EQ(compact_rt_check_tables(ctx, &config, &shape, 4, lens.data(), table.data(),
                                    counts.data(), nullptr),
            COMPACT_RT_OK);
}

TEST_F(Checks, ContextShorterThanTheChunk) {
  lens[1] = 100;
  expectRejected(append(), "compact_rt_append_kv: ctx_lens[1] (100) must be at least "
                           "shape->chunk_len (128)");
}

TEST_F(Checks, ContextBeyondTheCapacity) {
  lens[0] = 300;
  expectRejected(append(), "ctx_lens[0] (300) needs 3 KV blocks, more than "
                           "shape->block_capacity (2)");
  shape.block_capacity = 4;
  expectRejected(append(), "ctx_lens[0] (300) needs 5 pages, more than "
                           "shape->max_pages_per_seq (4)");
}

TEST_F(Checks, PageOutsideThePool) {
  pages[2] = 16;
  expectRejected(append(), "page_table[0][2] (16) must be in [0, shape->num_pages = 16)");
  pages[2] = -1;
  expectRejected(append(), "page_table[0][2] (-1) must be in [0, shape->num_pages = 16)");
  // Past a sequence's pages the row is not read.
  pages[2] = 2;
  pages[7] = 99;
  EXPECT_EQ(append(), COMPACT_RT_OK) << compact_rt_last_error();
}

TEST_F(Checks, PageTablesThatAlias) {
  pages[5] = 1; // sequence 1's second page is sequence 0's
  expectRejected(append(), "page_table[1][1]: page 1 is also used by another sequence");
  pages[5] = 5;
  pages[1] = 0; // twice in one sequence
  expectRejected(append(), "page_table[0][1]: page 0 is also used");
}

TEST_F(Checks, CountBeyondTheTable) {
  counts[7] = 3;
  expectRejected(attention(), "compact_rt_paged_attention: counts[1][3] (3) must be in [0, "
                              "shape->block_capacity = 2]");
  counts[7] = -1;
  expectRejected(attention(), "counts[1][3] (-1) must be in [0, shape->block_capacity = 2]");
}

TEST_F(Checks, BlockOutsideTheContext) {
  lens[1] = 128; // one KV block
  expectRejected(attention(), "table[1][0][1] (1) must be a KV block of the context: in [0, 1) "
                              "for ctx_lens[1] = 128");
  lens[1] = 192;
  table[0] = -5;
  expectRejected(attention(), "table[0][0][0] (-5) must be a KV block of the context");
}

TEST_F(Checks, TablesNotAscending) {
  table[2] = 1; // row 1 holds {1, 1}
  expectRejected(attention(), "table[0][1][1] (1) must be greater than the entry before it (1)");
  EXPECT_EQ(compact_rt_check_tables(ctx, &config, &shape, 4, lens.data(), table.data(),
                                    counts.data(), nullptr),
            COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(compact_rt_last_error()).find("compact_rt_check_tables: table[0][1][1]"),
            std::string::npos);
}

TEST_F(Checks, OffByDefault) {
  ASSERT_EQ(compact_rt_set_checks(ctx, 0), COMPACT_RT_OK);
  pages[2] = 16;
  EXPECT_EQ(append(), COMPACT_RT_OK) << "without checks the metadata is not read";
  EXPECT_EQ(compact_rt_set_checks(nullptr, 1), COMPACT_RT_INVALID_ARGUMENT);
}

TEST_F(Checks, PlanValidatesEveryOpBeforeTheFirstLaunch) {
  compact_rt_plan_desc desc{config, 4, {0.06f, 2, 4}, 0.0f, 2, 2, 0, 0};
  compact_rt_plan *plan = nullptr;
  ASSERT_EQ(compact_rt_plan_create(ctx, &desc, &plan), COMPACT_RT_OK) << compact_rt_last_error();
  auto chunk = [&](void *pooled, void *out) {
    return compact_rt_prefill_chunk(plan, &shape, 0, fake(1), fake(2), fake(3), fake(4), fake(5),
                                    pages.data(), lens.data(), pooled, out, nullptr, nullptr);
  };
  // A bad argument of the second and of the last op: the append (which
  // writes the cache) must not have been launched either.
  expectRejected(chunk(nullptr, fake(7)), "argument 'pooled' must not be NULL");
  expectRejected(chunk(fake(6), fake(1)), "argument 'out' must not alias");
  pages[4] = 0;
  expectRejected(chunk(fake(6), fake(7)), "page tables alias");
  pages[4] = 4;
  ASSERT_EQ(chunk(fake(6), fake(7)), COMPACT_RT_OK) << compact_rt_last_error();
  // Validated once, launched once: one launch per op.
  std::string l = log();
  EXPECT_EQ(l.find("append_kv_append"), l.rfind("append_kv_append")) << l;
  EXPECT_NE(l.find("paged_attention_attention"), std::string::npos) << l;
  compact_rt_plan_destroy(plan);
}

} // namespace
