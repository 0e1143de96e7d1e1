//===- ReferenceC.cpp - C entry points of the reference semantics ---------===//

#include "compact/Reference/ReferenceC.h"

#include "compact/Reference/Reference.h"

using namespace compact;

namespace {
ref::ChunkShape chunk(const compact_ref_shape *s) {
  return {s->batch,     s->chunk_len,  s->q_heads,       s->kv_heads,
          s->head_dim,  s->block_size, s->block_capacity};
}
ref::PagedCache cache(const compact_ref_shape *s) {
  ref::PagedCache c;
  c.layout = s->layout == 0 ? ref::KVLayout::NHD : ref::KVLayout::HND;
  c.numPages = s->num_pages;
  c.pageSize = s->page_size;
  c.kvHeads = s->kv_heads;
  c.headDim = s->head_dim;
  c.maxPagesPerSeq = s->max_pages_per_seq;
  return c;
}
} // namespace

extern "C" void compact_ref_pool_keys(const compact_ref_shape *s, const int32_t *ctx_lens,
                                      const int32_t *page_table, const float *k_cache,
                                      float *pooled) {
  ref::poolKeys(chunk(s), cache(s), ctx_lens, page_table, k_cache, pooled);
}

extern "C" void compact_ref_block_scores(const compact_ref_shape *s, const int32_t *ctx_lens,
                                         const float *q, const float *pooled, float scale,
                                         float *scores) {
  ref::blockScores(chunk(s), ctx_lens, q, pooled, scale, scores);
}

extern "C" void compact_ref_select_blocks(const compact_ref_shape *s, const int32_t *ctx_lens,
                                          const float *scores, int32_t mode, float threshold,
                                          int64_t sink, int64_t window, uint8_t *mask) {
  ref::SelectionParams p{ref::ThresholdMode(mode), threshold, sink, window};
  ref::selectBlocks(chunk(s), ctx_lens, scores, p, mask);
}

extern "C" void compact_ref_block_union(const compact_ref_shape *s, const int32_t *ctx_lens,
                                        const uint8_t *mask, int64_t exec_group_size,
                                        int64_t rows_per_group, int32_t *table,
                                        int32_t *counts) {
  ref::blockUnion(chunk(s), ctx_lens, mask, exec_group_size, table, counts, rows_per_group);
}

extern "C" void compact_ref_choose_exec_groups(const compact_ref_shape *s, int64_t rows_per_head,
                                               float slack, int32_t *table, int32_t *counts) {
  ref::chooseExecGroups(chunk(s), rows_per_head, slack, table, counts);
}

extern "C" void compact_ref_dense_table(const compact_ref_shape *s, const int32_t *ctx_lens,
                                        int64_t exec_group_size, int64_t rows_per_group,
                                        int32_t *table, int32_t *counts) {
  ref::fullBlockTable(chunk(s), ctx_lens, exec_group_size, table, counts, rows_per_group);
}

extern "C" void compact_ref_paged_attention(const compact_ref_shape *s, const int32_t *ctx_lens,
                                            const int32_t *page_table, const float *q,
                                            const float *k_cache, const float *v_cache,
                                            const int32_t *table, const int32_t *counts,
                                            int64_t exec_group_size, int64_t rows_per_group,
                                            float scale, float *out, float *lse) {
  ref::pagedAttention(chunk(s), cache(s), ctx_lens, page_table, q, k_cache, v_cache, table,
                      counts, exec_group_size, scale, out, lse, rows_per_group);
}
