/*===- ReferenceC.h - C entry points of the reference semantics --*- C -*-===*
 *
 * The C++ oracle (Reference.h) behind a C ABI, for test harnesses in other
 * languages (the GPU tests call it from Python). Arrays are contiguous fp32 /
 * int32 / int8 in the layouts of Reference.h; `layout` is 0 for NHD, 1 for HND;
 * `mode` 0 rowmax_log, 1 rowmax, 2 absolute.
 *===----------------------------------------------------------------------===*/

#ifndef COMPACT_REFERENCE_REFERENCEC_H
#define COMPACT_REFERENCE_REFERENCEC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int64_t batch, chunk_len, q_heads, kv_heads, head_dim, block_size, block_capacity;
  int64_t num_pages, page_size, max_pages_per_seq, layout;
} compact_ref_shape;

void compact_ref_pool_keys(const compact_ref_shape *s, const int32_t *ctx_lens,
                           const int32_t *page_table, const float *k_cache, float *pooled);
void compact_ref_block_scores(const compact_ref_shape *s, const int32_t *ctx_lens, const float *q,
                              const float *pooled, float scale, float *scores);
void compact_ref_select_blocks(const compact_ref_shape *s, const int32_t *ctx_lens,
                               const float *scores, int32_t mode, float threshold, int64_t sink,
                               int64_t window, uint8_t *mask);
/* Tables have rows_per_group (1, or Qb: one table per query block) rows per
 * execution group. */
void compact_ref_block_union(const compact_ref_shape *s, const int32_t *ctx_lens,
                             const uint8_t *mask, int64_t exec_group_size,
                             int64_t rows_per_group, int32_t *table, int32_t *counts);
/* Per-head tables (rows_per_head rows per query head) rewritten by the
 * execution-group cost model (compact.choose_exec_groups). */
void compact_ref_choose_exec_groups(const compact_ref_shape *s, int64_t rows_per_head,
                                    float slack, int32_t *table, int32_t *counts);
void compact_ref_dense_table(const compact_ref_shape *s, const int32_t *ctx_lens,
                             int64_t exec_group_size, int64_t rows_per_group, int32_t *table,
                             int32_t *counts);
void compact_ref_paged_attention(const compact_ref_shape *s, const int32_t *ctx_lens,
                                 const int32_t *page_table, const float *q, const float *k_cache,
                                 const float *v_cache, const int32_t *table, const int32_t *counts,
                                 int64_t exec_group_size, int64_t rows_per_group, float scale,
                                 float *out, float *lse);

#ifdef __cplusplus
}
#endif

#endif /* COMPACT_REFERENCE_REFERENCEC_H */
