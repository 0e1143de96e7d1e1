//===- RuntimeTest.cpp - the runtime's validation, launches and page pool -===//
//
// Runs without a GPU: a dry-run context validates every call and records the
// launches (kernel, grid, block, shared memory) it would make.
//
//===----------------------------------------------------------------------===//

#include "compact_rt.h"

#include <gtest/gtest.h>

#include <limits>
#include <set>
#include <string>
#include <vector>

namespace {

/// Aligned fake device addresses: dry runs never dereference them.
template <typename T = void>
T *fake(uintptr_t n) {
  return reinterpret_cast<T *>(uintptr_t(1) << 32 | n << 12);
}

class DryRun : public ::testing::Test {
protected:
  void SetUp() override { ASSERT_EQ(compact_rt_create_dry_run(&ctx), COMPACT_RT_OK); }
  void TearDown() override { compact_rt_destroy(ctx); }
  std::string log() const { return compact_rt_dry_run_log(ctx); }
  std::string error() const { return compact_rt_last_error(); }
  /// One chunk of `plan` on fake buffers, prefix `prefix`.
  compact_rt_status prefillChunk(compact_rt_plan *plan, const compact_rt_shape &sh,
                                 int32_t prefix) {
    return compact_rt_prefill_chunk(plan, &sh, prefix, fake(1), fake(2), fake(3), fake(4),
                                    fake(5), fake<int32_t>(6), fake<int32_t>(7), fake(8), fake(9),
                                    nullptr, nullptr);
  }

  compact_rt_context *ctx = nullptr;
  compact_rt_config config{16, 4, 128, 64, 128, COMPACT_RT_BF16, COMPACT_RT_NHD};
  // B 8, C 1024, 8192 pages, 2048 pages per sequence (128K), Kb 1024.
  compact_rt_shape shape{8, 1024, 8192, 2048, 1024, 0};
  compact_rt_selection selection{0.06f, 2, 4};
};

TEST(Runtime, CreateExplainsAMissingDriver) {
  compact_rt_context *ctx = nullptr;
  compact_rt_status status = compact_rt_create(0, &ctx);
  if (status == COMPACT_RT_OK) { // a machine with a GPU
    compact_rt_destroy(ctx);
    GTEST_SKIP() << "a CUDA driver is present";
  }
  std::string message = compact_rt_last_error();
  if (status == COMPACT_RT_NO_DRIVER)
    EXPECT_NE(message.find("libcuda.so.1"), std::string::npos) << message;
  else
    EXPECT_NE(message.find("compact_rt_create"), std::string::npos) << message;
  EXPECT_EQ(ctx, nullptr);
}

/// One paged_attention call of the fixture's config at batch `b`, chunk `c`.
compact_rt_status attend(compact_rt_context *ctx, const compact_rt_config &config,
                         compact_rt_shape shape, int32_t b, int32_t c, int32_t s) {
  shape.batch = b;
  shape.chunk_len = c;
  return compact_rt_paged_attention(ctx, &config, &shape, s, fake(1), fake(2), fake(3),
                                    fake<int32_t>(4), fake<int32_t>(5), fake<int32_t>(6),
                                    fake<int32_t>(7), 0.0f, fake(8), nullptr, nullptr);
}

TEST_F(DryRun, AttentionLaunchesOneBlockPer128PackedRows) {
  for (int32_t s : {1, 2, 4}) {
    ASSERT_EQ(compact_rt_paged_attention(ctx, &config, &shape, s, fake(1), fake(2), fake(3),
                                         fake<int32_t>(4), fake<int32_t>(5), fake<int32_t>(6),
                                         fake<int32_t>(7), 0.0f, fake(8), nullptr, nullptr),
              COMPACT_RT_OK)
        << error();
  }
  // One table row per group: neighbouring row tiles walk it as cluster pairs.
  std::string expected =
      "q16_kv4_d128_p64_b128_bf16_nhd__s1__paged_attention_attention grid=[8,16,8] "
      "block=[384,1,1] shared=229472 cluster=[2,1,1]\n"
      "q16_kv4_d128_p64_b128_bf16_nhd__s2__paged_attention_attention grid=[16,8,8] "
      "block=[384,1,1] shared=229472 cluster=[2,1,1]\n"
      "q16_kv4_d128_p64_b128_bf16_nhd__s4__paged_attention_attention grid=[32,4,8] "
      "block=[384,1,1] shared=229472 cluster=[2,1,1]\n";
  EXPECT_EQ(log(), expected);
}

TEST_F(DryRun, ClusterPairsOnlyWhereBothTilesReadOneTableRow) {
  // One table per query block (bs 128): a pair of row tiles is 256 / s
  // tokens, one block only from s = 2 on.
  compact_rt_shape perBlock = shape;
  perBlock.per_query_block = 1;
  for (int32_t s : {1, 2})
    ASSERT_EQ(attend(ctx, config, perBlock, 8, 1024, s), COMPACT_RT_OK) << error();
  // An odd number of row tiles (C 640, s 1: 5) cannot be paired.
  ASSERT_EQ(attend(ctx, config, shape, 8, 640, 1), COMPACT_RT_OK) << error();
  EXPECT_EQ(log(), "q16_kv4_d128_p64_b128_bf16_nhd__s1__paged_attention_attention "
                   "grid=[8,16,8] block=[384,1,1] shared=229472\n"
                   "q16_kv4_d128_p64_b128_bf16_nhd__s2__paged_attention_attention "
                   "grid=[16,8,8] block=[384,1,1] shared=229472 cluster=[2,1,1]\n"
                   "q16_kv4_d128_p64_b128_bf16_nhd__s1__paged_attention_attention "
                   "grid=[5,16,8] block=[384,1,1] shared=229472\n");
}

TEST_F(DryRun, ClustersNeverAndAlways) {
  compact_rt_shape perBlock = shape;
  perBlock.per_query_block = 1;
  ASSERT_EQ(compact_rt_set_clusters(ctx, COMPACT_RT_CLUSTERS_NEVER), COMPACT_RT_OK);
  ASSERT_EQ(attend(ctx, config, shape, 8, 1024, 4), COMPACT_RT_OK) << error();
  EXPECT_EQ(log().find("cluster"), std::string::npos) << log();
  ASSERT_EQ(compact_rt_set_clusters(ctx, COMPACT_RT_CLUSTERS_ALWAYS), COMPACT_RT_OK);
  ASSERT_EQ(attend(ctx, config, perBlock, 8, 1024, 1), COMPACT_RT_OK) << error();
  EXPECT_NE(log().find("grid=[8,16,8] block=[384,1,1] shared=229472 cluster=[2,1,1]"),
            std::string::npos)
      << log();
  // Split walks never run as clusters.
  std::string before = log();
  ASSERT_EQ(attend(ctx, config, shape, 1, 512, 4), COMPACT_RT_OK) << error();
  EXPECT_EQ(log().substr(before.size()).find("cluster"), std::string::npos) << log();
}

TEST_F(DryRun, ClusterModeOutOfRangeIsRejected) {
  EXPECT_EQ(compact_rt_set_clusters(ctx, 3), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("argument 'clusters' must be COMPACT_RT_CLUSTERS_AUTO"),
            std::string::npos)
      << error();
  EXPECT_EQ(compact_rt_set_clusters(nullptr, 0), COMPACT_RT_INVALID_ARGUMENT);
}

TEST_F(DryRun, SmallGridsSplitTheKVWalkAndMergeThePartials) {
  // B 1, C 512, s 4: 16 row tiles x 4 groups = 64 blocks on 132 SMs -> two
  // splits (128 blocks, one wave), then the merge: a warp per (token, head).
  ASSERT_EQ(attend(ctx, config, shape, 1, 512, 4), COMPACT_RT_OK) << error();
  EXPECT_EQ(log(),
            "q16_kv4_d128_p64_b128_bf16_nhd__s4__paged_attention_split_attention grid=[16,4,2] "
            "block=[384,1,1] shared=229472\n"
            "q16_kv4_d128_p64_b128_bf16_nhd__s4__paged_attention_split_combine grid=[2048,1,1] "
            "block=[128,1,1] shared=0\n");
}

TEST_F(DryRun, GridsThatFillTheGpuAreNotSplit) {
  // B 1, C 1024, s 1: 8 x 16 = 128 blocks; B 8: 1024.
  ASSERT_EQ(attend(ctx, config, shape, 1, 1024, 1), COMPACT_RT_OK) << error();
  ASSERT_EQ(attend(ctx, config, shape, 8, 1024, 4), COMPACT_RT_OK) << error();
  EXPECT_EQ(log().find("split"), std::string::npos) << log();
}

TEST_F(DryRun, PinnedSplits) {
  ASSERT_EQ(compact_rt_set_kv_splits(ctx, 3), COMPACT_RT_OK);
  ASSERT_EQ(attend(ctx, config, shape, 8, 1024, 4), COMPACT_RT_OK) << error();
  EXPECT_NE(log().find("split_attention grid=[32,4,24]"), std::string::npos) << log();
  // 1 never splits; the mma.sync fallback has no split kernels and runs whole.
  for (int32_t pinned : {1, 8}) {
    ASSERT_EQ(compact_rt_set_kv_splits(ctx, pinned), COMPACT_RT_OK);
    ASSERT_EQ(compact_rt_set_matrix_path(ctx, pinned == 1 ? "wgmma" : "mma_sync"),
              COMPACT_RT_OK);
    std::string before = log();
    ASSERT_EQ(attend(ctx, config, shape, 1, 512, 4), COMPACT_RT_OK) << error();
    std::string added = log().substr(before.size());
    EXPECT_EQ(added.find("split"), std::string::npos) << added;
  }
}

TEST_F(DryRun, KVSplitsOutOfRangeAreRejected) {
  EXPECT_EQ(compact_rt_set_kv_splits(ctx, 17), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("argument 'splits' must be in [0, 16]"), std::string::npos) << error();
  EXPECT_EQ(compact_rt_set_kv_splits(ctx, -1), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_EQ(compact_rt_set_kv_splits(nullptr, 2), COMPACT_RT_INVALID_ARGUMENT);
}

TEST_F(DryRun, FusedSelectionIsClearThresholdTable) {
  ASSERT_EQ(compact_rt_score_select_union(ctx, &config, &shape, 4, fake(1), fake(2),
                                          fake<int32_t>(3), 0.0f, &selection, fake<int32_t>(4),
                                          fake<int32_t>(5), nullptr),
            COMPACT_RT_OK)
      << error();
  std::string l = log();
  size_t clear = l.find("score_select_union_clear grid=[4,8,1]");
  size_t select = l.find("score_select_union_select grid=[8,16,8]");
  size_t table = l.find("score_select_union_table grid=[4,8,1]");
  ASSERT_NE(clear, std::string::npos) << l;
  ASSERT_NE(select, std::string::npos) << l;
  ASSERT_NE(table, std::string::npos) << l;
  EXPECT_LT(clear, select);
  EXPECT_LT(select, table);
  // The row of scores of 1024 blocks lives in shared memory.
  EXPECT_NE(l.find("shared=" + std::to_string(99328 + 4 * 1024)), std::string::npos) << l;
}

TEST_F(DryRun, PerQueryBlockTablesHaveARowPerGroupAndQueryBlock) {
  // C = 1024, bs = 128: Qb = 8 table rows per execution group.
  compact_rt_shape perBlock = shape;
  perBlock.per_query_block = 1;
  ASSERT_EQ(compact_rt_score_select_union(ctx, &config, &perBlock, 1, fake(1), fake(2),
                                          fake<int32_t>(3), 0.0f, &selection, fake<int32_t>(4),
                                          fake<int32_t>(5), nullptr),
            COMPACT_RT_OK)
      << error();
  ASSERT_EQ(compact_rt_paged_attention(ctx, &config, &perBlock, 1, fake(1), fake(2), fake(3),
                                       fake<int32_t>(4), fake<int32_t>(5), fake<int32_t>(6),
                                       fake<int32_t>(7), 0.0f, fake(8), nullptr, nullptr),
            COMPACT_RT_OK)
      << error();
  std::string l = log();
  EXPECT_NE(l.find("s1__score_select_union_clear grid=[128,8,1]"), std::string::npos) << l;
  EXPECT_NE(l.find("s1__score_select_union_select grid=[8,16,8]"), std::string::npos) << l;
  EXPECT_NE(l.find("s1__score_select_union_table grid=[128,8,1]"), std::string::npos) << l;
  // Attention still runs one block per 128 rows and group; each reads its
  // query block's row.
  EXPECT_NE(l.find("s1__paged_attention_attention grid=[8,16,8]"), std::string::npos) << l;

  perBlock.per_query_block = 2;
  EXPECT_EQ(compact_rt_dense_table(ctx, &config, &perBlock, 4, fake<int32_t>(1),
                                   fake<int32_t>(2), fake<int32_t>(3), nullptr),
            COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("shape->per_query_block must be 0"), std::string::npos) << error();

  // A row tile of 128 / s tokens must lie in one query block of 64 tokens.
  compact_rt_config small{16, 4, 128, 64, 64, COMPACT_RT_BF16, COMPACT_RT_NHD};
  perBlock.per_query_block = 1;
  perBlock.block_capacity = 2048;
  EXPECT_EQ(compact_rt_paged_attention(ctx, &small, &perBlock, 1, fake(1), fake(2), fake(3),
                                       fake<int32_t>(4), fake<int32_t>(5), fake<int32_t>(6),
                                       fake<int32_t>(7), 0.0f, fake(8), nullptr, nullptr),
            COMPACT_RT_UNSUPPORTED);
  EXPECT_NE(error().find("config->block_size * exec_group_size (64 * 1) to be a multiple of 128"),
            std::string::npos)
      << error();
}

TEST_F(DryRun, ArgumentsAreNamed) {
  struct Case {
    const char *expect;
    compact_rt_status status;
  };
  auto attention = [&](int32_t s, const void *q, const void *out) {
    return compact_rt_paged_attention(ctx, &config, &shape, s, q, fake(2), fake(3),
                                      fake<int32_t>(4), fake<int32_t>(5), fake<int32_t>(6),
                                      fake<int32_t>(7), 0.0f, const_cast<void *>(out), nullptr,
                                      nullptr);
  };
  EXPECT_EQ(attention(4, nullptr, fake(8)), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("argument 'q' must not be NULL"), std::string::npos) << error();
  EXPECT_EQ(attention(4, reinterpret_cast<void *>(uintptr_t(fake(1)) + 2), fake(8)),
            COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("argument 'q' must be aligned to 16 bytes"), std::string::npos);
  EXPECT_EQ(attention(3, fake(1), fake(8)), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("argument 'exec_group_size' (3) must divide q_heads / kv_heads (4)"),
            std::string::npos)
      << error();
  EXPECT_EQ(attention(4, fake(1), fake(1)), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("argument 'out' must not alias"), std::string::npos);

  compact_rt_shape small = shape;
  small.block_capacity = 4; // 512 tokens < chunk 1024
  EXPECT_EQ(compact_rt_dense_table(ctx, &config, &small, 4, fake<int32_t>(1), fake<int32_t>(2),
                                   fake<int32_t>(3), nullptr),
            COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("shape->block_capacity (4) holds fewer tokens than shape->chunk_len"),
            std::string::npos)
      << error();

  compact_rt_config odd = config;
  odd.head_dim = 96;
  EXPECT_EQ(compact_rt_dense_table(ctx, &odd, &shape, 4, fake<int32_t>(1), fake<int32_t>(2),
                                   fake<int32_t>(3), nullptr),
            COMPACT_RT_UNSUPPORTED);
  EXPECT_NE(error().find("no dense_table kernel for q16_kv4_d96_p64_b128_bf16_nhd"),
            std::string::npos)
      << error();

  compact_rt_selection bad{1.5f, 2, 4};
  EXPECT_EQ(compact_rt_select_union(ctx, &config, &shape, 4, fake<float>(1), fake<int32_t>(2),
                                    &bad, fake<int32_t>(3), fake<int32_t>(4), nullptr),
            COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("selection->alpha must be in (0, 1]"), std::string::npos) << error();

  compact_rt_shape huge = shape;
  huge.block_capacity = 200000; // the row of scores no longer fits in shared memory
  huge.max_pages_per_seq = 400000;
  EXPECT_EQ(compact_rt_score_select_union(ctx, &config, &huge, 4, fake(1), fake(2),
                                          fake<int32_t>(3), 0.0f, &selection, fake<int32_t>(4),
                                          fake<int32_t>(5), nullptr),
            COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("bytes of shared memory for shape->block_capacity 200000"),
            std::string::npos)
      << error();
  // A failed call launches nothing (only the clear kernel of the last call,
  // which needs no shared memory, came before its check).
  EXPECT_EQ(log().find("attention"), std::string::npos);
}

TEST_F(DryRun, UnsupportedConfigurationsNameTheKeyAndWhatTheLibraryHolds) {
  compact_rt_config odd = config;
  odd.block_size = 256;
  compact_rt_plan_desc desc{odd, 4, selection, 0.0f, 8, 1024, 0, 0};
  compact_rt_plan *plan = nullptr;
  EXPECT_EQ(compact_rt_plan_create(ctx, &desc, &plan), COMPACT_RT_UNSUPPORTED);
  EXPECT_EQ(plan, nullptr);
  std::string message = error();
  EXPECT_NE(message.find("desc->config q16_kv4_d128_p64_b256_bf16_nhd with "
                         "desc->exec_group_size 4"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("q16_kv4_d128_p64_b128_bf16_nhd (exec_group_size 1 2 4)"),
            std::string::npos)
      << message;
  // The ops say the same.
  EXPECT_EQ(attend(ctx, odd, shape, 8, 1024, 4), COMPACT_RT_UNSUPPORTED);
  EXPECT_NE(error().find("q16_kv4_d128_p64_b128_bf16_nhd (exec_group_size 1 2 4)"),
            std::string::npos)
      << error();
}

TEST_F(DryRun, PlanRunsDenseWhileSelectionWouldKeepEverything) {
  compact_rt_plan_desc desc{config, 4, selection, 0.0f, 8, 1024, 0, 0};
  compact_rt_plan *plan = nullptr;
  ASSERT_EQ(compact_rt_plan_create(ctx, &desc, &plan), COMPACT_RT_OK) << error();
  auto chunk = [&](int32_t prefix) { return prefillChunk(plan, shape, prefix); };
  // First chunk: prefix 0 -> dense. Later, selection keeps every prefix block
  // while the first query block's last block is below sink + window = 6.
  ASSERT_EQ(chunk(0), COMPACT_RT_OK) << error();
  std::string first = log();
  EXPECT_NE(first.find("append_kv_append"), std::string::npos);
  EXPECT_NE(first.find("pool_keys_pool"), std::string::npos);
  EXPECT_NE(first.find("dense_table_dense"), std::string::npos);
  EXPECT_EQ(first.find("score_select_union"), std::string::npos);
  EXPECT_NE(first.find("paged_attention_attention"), std::string::npos);
  // (P + 128 - 1) / 128 < 6  <=>  P <= 640: the last dense prefix.
  ASSERT_EQ(chunk(640), COMPACT_RT_OK);
  EXPECT_EQ(log().find("score_select_union"), std::string::npos);
  ASSERT_EQ(chunk(641), COMPACT_RT_OK);
  EXPECT_NE(log().find("score_select_union_select"), std::string::npos);
  compact_rt_shape bigger = shape;
  bigger.batch = 9;
  EXPECT_EQ(prefillChunk(plan, bigger, 0), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("exceeds the plan's max_batch (8)"), std::string::npos) << error();
  compact_rt_plan_destroy(plan);
}

TEST_F(DryRun, PlanWithPerQueryBlockTables) {
  compact_rt_plan_desc desc{config, 1, selection, 0.0f, 8, 1024, 1, 0};
  compact_rt_plan *plan = nullptr;
  EXPECT_EQ(compact_rt_plan_create(ctx, &desc, &plan), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("desc->max_chunk_len must be positive"), std::string::npos) << error();
  desc.max_chunk_len = 512;
  ASSERT_EQ(compact_rt_plan_create(ctx, &desc, &plan), COMPACT_RT_OK) << error();
  auto chunk = [&](const compact_rt_shape &sh) { return prefillChunk(plan, sh, 4096); };
  EXPECT_EQ(chunk(shape), COMPACT_RT_INVALID_ARGUMENT); // C = 1024 > 512
  EXPECT_NE(error().find("shape->chunk_len (1024) exceeds the plan's max_chunk_len (512)"),
            std::string::npos)
      << error();
  compact_rt_shape half = shape;
  half.chunk_len = 512;
  ASSERT_EQ(chunk(half), COMPACT_RT_OK) << error();
  // The plan's layout (16 heads x 4 query blocks), whatever the shape says.
  EXPECT_NE(log().find("s1__score_select_union_table grid=[64,8,1]"), std::string::npos)
      << log();
  compact_rt_plan_destroy(plan);
}

TEST_F(DryRun, ChooseExecGroupsRunsOneBlockPerKVGroupAndRow) {
  // Per-head tables of one row per query block: 16 heads x 8 rows, G = 4.
  compact_rt_shape perBlock = shape;
  perBlock.per_query_block = 1;
  ASSERT_EQ(compact_rt_choose_exec_groups(ctx, &config, &perBlock, 0.5f, fake<int32_t>(1),
                                          fake<int32_t>(2), nullptr),
            COMPACT_RT_OK)
      << error();
  EXPECT_NE(log().find("__choose_exec_groups_choose grid=[32,8,1]"), std::string::npos) << log();
  for (float bad : {-0.5f, std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    EXPECT_EQ(compact_rt_choose_exec_groups(ctx, &config, &perBlock, bad, fake<int32_t>(1),
                                            fake<int32_t>(2), nullptr),
              COMPACT_RT_INVALID_ARGUMENT);
    EXPECT_NE(error().find("argument 'slack' must be finite and >= 0"), std::string::npos)
        << error();
  }
  EXPECT_EQ(compact_rt_choose_exec_groups(ctx, &config, &perBlock, 0.5f, nullptr,
                                          fake<int32_t>(2), nullptr),
            COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("argument 'table' must not be NULL"), std::string::npos) << error();
}

TEST_F(DryRun, PlanChoosesExecGroupsAfterSelection) {
  compact_rt_plan_desc desc{config, 4, selection, 0.0f, 8, 1024, 1, 1024, 0.5f};
  compact_rt_plan *plan = nullptr;
  EXPECT_EQ(compact_rt_plan_create(ctx, &desc, &plan), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("desc->exec_group_size must be 1, got 4"), std::string::npos)
      << error();
  desc.exec_group_size = 1;
  desc.group_slack = -1.0f;
  EXPECT_EQ(compact_rt_plan_create(ctx, &desc, &plan), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(error().find("desc->group_slack must be finite and >= 0"), std::string::npos)
      << error();
  desc.group_slack = 0.5f;
  ASSERT_EQ(compact_rt_plan_create(ctx, &desc, &plan), COMPACT_RT_OK) << error();
  auto chunk = [&](int32_t prefix) { return prefillChunk(plan, shape, prefix); };
  // The first chunk runs dense: nothing to choose.
  ASSERT_EQ(chunk(0), COMPACT_RT_OK) << error();
  EXPECT_EQ(log().find("choose_exec_groups"), std::string::npos) << log();
  ASSERT_EQ(chunk(4096), COMPACT_RT_OK) << error();
  std::string l = log();
  size_t select = l.find("s1__score_select_union_table"), choose = l.find("choose_exec_groups");
  size_t attention = l.rfind("s1__paged_attention_attention");
  ASSERT_NE(choose, std::string::npos) << l;
  EXPECT_LT(select, choose);
  EXPECT_LT(choose, attention);
  compact_rt_plan_destroy(plan);
}

TEST(PagePool, PagesBelongToOneSequenceAtATime) {
  compact_rt_page_pool *pool = nullptr;
  ASSERT_EQ(compact_rt_page_pool_create(10, 64, 4, &pool), COMPACT_RT_OK);
  EXPECT_EQ(compact_rt_page_pool_reserve(pool, 1, 130), COMPACT_RT_OK); // 3 pages
  EXPECT_EQ(compact_rt_page_pool_reserve(pool, 2, 64), COMPACT_RT_OK);  // 1 page
  EXPECT_EQ(compact_rt_page_pool_reserve(pool, 1, 192), COMPACT_RT_OK); // still 3
  EXPECT_EQ(compact_rt_page_pool_free_pages(pool), 6);
  std::vector<int32_t> row1(4), row2(4);
  ASSERT_EQ(compact_rt_page_pool_table(pool, 1, row1.data()), COMPACT_RT_OK);
  ASSERT_EQ(compact_rt_page_pool_table(pool, 2, row2.data()), COMPACT_RT_OK);
  EXPECT_EQ(row1[3], -1);
  EXPECT_EQ(row2[1], -1);
  std::set<int32_t> used(row1.begin(), row1.begin() + 3);
  EXPECT_EQ(used.size(), 3u);
  EXPECT_EQ(used.count(row2[0]), 0u) << "a page handed out twice";

  // A sequence may not outgrow its page table row; the pool may not overflow.
  EXPECT_EQ(compact_rt_page_pool_reserve(pool, 1, 5 * 64), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(compact_rt_last_error()).find("more than max_pages_per_seq (4)"),
            std::string::npos);
  EXPECT_EQ(compact_rt_page_pool_reserve(pool, 3, 4 * 64), COMPACT_RT_OK);
  EXPECT_EQ(compact_rt_page_pool_reserve(pool, 4, 4 * 64), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(compact_rt_last_error()).find("the pool is exhausted"), std::string::npos);
  EXPECT_EQ(compact_rt_page_pool_free_pages(pool), 2) << "a failed reserve allocates nothing";

  EXPECT_EQ(compact_rt_page_pool_release(pool, 3), COMPACT_RT_OK);
  EXPECT_EQ(compact_rt_page_pool_free_pages(pool), 6);
  EXPECT_EQ(compact_rt_page_pool_release(pool, 3), COMPACT_RT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(compact_rt_last_error()).find("sequence 3 holds no pages"),
            std::string::npos);
  EXPECT_EQ(compact_rt_page_pool_table(pool, 99, row1.data()), COMPACT_RT_INVALID_ARGUMENT);
  compact_rt_page_pool_destroy(pool);
}

} // namespace
