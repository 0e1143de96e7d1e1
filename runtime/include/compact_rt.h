/*===- compact_rt.h - CompactAttention runtime C API ------------*- C -*-===*
 *
 * Launches the kernels compact-codegen generated (linked into this library)
 * on a caller's CUDA stream. Every pointer is a device pointer (CUdeviceptr /
 * what torch.Tensor.data_ptr() returns); buffers are contiguous, row-major,
 * in the shapes of the compact dialect:
 *
 *   q, out          [B, C, Hq, D]       k_new, v_new   [B, C, Hkv, D]
 *   k/v cache       [pages, PS, Hkv, D] (NHD) or [pages, Hkv, PS, D] (HND)
 *   page_table      [B, max_pages_per_seq] int32    ctx_lens [B] int32
 *   pooled          [B, Hkv, Kb, D]     scores [B, Hq, Qb, Kb] f32
 *   mask            [B, Hq, Qb, Kb] int8  table [B, Hq / s, Kb] int32
 *   counts          [B, Hq / s] int32    lse [B, Hq, C] f32
 *
 * with Qb = ceil(C / block_size) and Kb = shape->block_capacity. ctx_lens
 * holds each sequence's length after the chunk. No call synchronises the
 * host; every call is capturable in a CUDA graph.
 *
 * Errors: every function returns a status; compact_rt_last_error() gives the
 * message of the last failure on the calling thread, naming the argument and
 * what was expected. libcuda is opened on first use: on a machine without a
 * driver, compact_rt_create fails with COMPACT_RT_NO_DRIVER.
 *===----------------------------------------------------------------------===*/

#ifndef COMPACT_RT_H
#define COMPACT_RT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  COMPACT_RT_OK = 0,
  COMPACT_RT_INVALID_ARGUMENT = 1,
  COMPACT_RT_NO_DRIVER = 2,
  COMPACT_RT_CUDA_ERROR = 3,
  COMPACT_RT_UNSUPPORTED = 4,
} compact_rt_status;

typedef enum { COMPACT_RT_BF16 = 0, COMPACT_RT_F16 = 1 } compact_rt_dtype;
typedef enum { COMPACT_RT_NHD = 0, COMPACT_RT_HND = 1 } compact_rt_layout;

/* What the kernels are specialised on. */
typedef struct {
  int32_t q_heads, kv_heads, head_dim, page_size, block_size;
  compact_rt_dtype dtype;
  compact_rt_layout layout;
} compact_rt_config;

/* Run-time sizes of one call. */
typedef struct {
  int32_t batch;             /* B */
  int32_t chunk_len;         /* C: query tokens of the chunk per sequence */
  int32_t num_pages;         /* pages in the K / V cache pool */
  int32_t max_pages_per_seq; /* page_table row length */
  int32_t block_capacity;    /* Kb: KV blocks per row of pooled / scores / mask / table */
  int32_t per_query_block;   /* block tables: 0, one per execution group ([B, Hq / s, Kb], the
                                union over the chunk's query blocks); 1, one per execution
                                group and query block ([B, Hq / s * Qb, Kb], row e * Qb + qb;
                                with s = 1 exactly the selected blocks of each head) */
} compact_rt_shape;

/* FlashPrefill selection: keep score >= rowmax + ln(alpha), the `sink` first
 * blocks and the `window` most recent blocks of each query block. */
typedef struct {
  float alpha;
  int32_t sink;
  int32_t window;
} compact_rt_selection;

typedef struct compact_rt_context compact_rt_context;

const char *compact_rt_last_error(void);

/* Opens libcuda, retains the device's primary context, loads the kernels. */
compact_rt_status compact_rt_create(int device, compact_rt_context **out);
void compact_rt_destroy(compact_rt_context *ctx);

/* A context without a device: every call validates its arguments and
 * records its launches (kernel, grid, block, shared memory) instead of running
 * them; compact_rt_dry_run_log returns the record, one launch per line.
 * For tests and for checking an engine's calls on a machine without a GPU. */
compact_rt_status compact_rt_create_dry_run(compact_rt_context **out);
const char *compact_rt_dry_run_log(const compact_rt_context *ctx);

/* Which attention kernel compact_rt_paged_attention launches: "wgmma" (the
 * default: Hopper's warpgroup MMA) or "mma_sync" (the portable fallback).
 * The environment variable COMPACT_RT_MATRIX_PATH sets the default. */
compact_rt_status compact_rt_set_matrix_path(compact_rt_context *ctx, const char *path);

/* Split-KV of compact_rt_paged_attention (wgmma path): each row tile's
 * table walk is split over `splits` blocks whose partial results a second
 * kernel merges by their log-sum-exp, in a fixed order (bit-identical run to
 * run). 0, the default, chooses from the work: more splits when the grid
 * would leave SMs idle (small batch, short chunk), none when it fills the
 * GPU; 1 never splits; at most 16. The environment variable
 * COMPACT_RT_KV_SPLITS sets the default. The workspace is scratch of the
 * context, one per stream. */
compact_rt_status compact_rt_set_kv_splits(compact_rt_context *ctx, int32_t splits);

/* Thread-block clusters of compact_rt_paged_attention (wgmma path, unsplit):
 * two neighbouring row tiles that walk the same table row run as a cluster
 * of two blocks, each bringing in half of every K / V tile for both (TMA
 * multicast), which halves the cache traffic from L2. AUTO, the default,
 * clusters when every pair of tiles reads one table row (one row per
 * execution group, or one per query block with block_size * exec_group_size
 * a multiple of 256); NEVER launches plain blocks; ALWAYS clusters whenever
 * the grid allows (the kernel still walks alone the pairs whose rows differ;
 * for tests). The results are the same bits either way. The environment
 * variable COMPACT_RT_CLUSTERS (auto, never, always) sets the default. */
typedef enum {
  COMPACT_RT_CLUSTERS_AUTO = 0,
  COMPACT_RT_CLUSTERS_NEVER = 1,
  COMPACT_RT_CLUSTERS_ALWAYS = 2
} compact_rt_clusters;
compact_rt_status compact_rt_set_clusters(compact_rt_context *ctx, int32_t clusters);

/* 1 if the library has kernels for (config, exec_group_size), else 0. */
int compact_rt_supports(const compact_rt_context *ctx, const compact_rt_config *config,
                        int32_t exec_group_size);

/* compact.append_kv: the chunk's K / V into the paged cache. */
compact_rt_status compact_rt_append_kv(compact_rt_context *ctx, const compact_rt_config *config,
                                       const compact_rt_shape *shape, const void *k_new,
                                       const void *v_new, const int32_t *page_table,
                                       const int32_t *ctx_lens, void *k_cache, void *v_cache,
                                       void *stream);

/* compact.pool_keys: mean-pooled keys of the blocks the chunk touched. */
compact_rt_status compact_rt_pool_keys(compact_rt_context *ctx, const compact_rt_config *config,
                                       const compact_rt_shape *shape, const void *k_cache,
                                       const int32_t *page_table, const int32_t *ctx_lens,
                                       void *pooled, void *stream);

/* compact.block_scores (scale <= 0: 1 / sqrt(D)). */
compact_rt_status compact_rt_block_scores(compact_rt_context *ctx,
                                          const compact_rt_config *config,
                                          const compact_rt_shape *shape, const void *q,
                                          const void *pooled, const int32_t *ctx_lens,
                                          float scale, float *scores, void *stream);

/* compact.select_blocks: scores -> 2D block mask. */
compact_rt_status compact_rt_select_blocks(compact_rt_context *ctx,
                                           const compact_rt_config *config,
                                           const compact_rt_shape *shape, const float *scores,
                                           const int32_t *ctx_lens,
                                           const compact_rt_selection *selection, int8_t *mask,
                                           void *stream);

/* compact.block_union: mask -> tables and counts of execution groups of s. */
compact_rt_status compact_rt_block_union(compact_rt_context *ctx, const compact_rt_config *config,
                                         const compact_rt_shape *shape, int32_t exec_group_size,
                                         const int8_t *mask, const int32_t *ctx_lens,
                                         int32_t *table, int32_t *counts, void *stream);

/* compact.select_union: given scores -> tables (no mask in memory). */
compact_rt_status compact_rt_select_union(compact_rt_context *ctx, const compact_rt_config *config,
                                          const compact_rt_shape *shape, int32_t exec_group_size,
                                          const float *scores, const int32_t *ctx_lens,
                                          const compact_rt_selection *selection, int32_t *table,
                                          int32_t *counts, void *stream);

/* compact.score_select_union: FlashPrefill selection straight into tables. */
compact_rt_status compact_rt_score_select_union(
    compact_rt_context *ctx, const compact_rt_config *config, const compact_rt_shape *shape,
    int32_t exec_group_size, const void *q, const void *pooled, const int32_t *ctx_lens,
    float scale, const compact_rt_selection *selection, int32_t *table, int32_t *counts,
    void *stream);

/* compact.choose_exec_groups: the execution-group cost model on per-head
 * tables (the exec_group_size 1 layout of `shape`, e.g. as score_select_union
 * with exec_group_size 1 writes them). For every sequence, KV group and table
 * row index it picks the largest sub-group size s' dividing G whose tables
 * cost (query rows x blocks walked) at most (1 + slack) times the per-head
 * tables', and writes each head's row as its sub-group's union. slack: finite,
 * >= 0 (0 keeps per-head tables but where heads selected the same blocks). */
compact_rt_status compact_rt_choose_exec_groups(compact_rt_context *ctx,
                                                const compact_rt_config *config,
                                                const compact_rt_shape *shape, float slack,
                                                int32_t *table, int32_t *counts, void *stream);

/* compact.dense_table: every block of the context. */
compact_rt_status compact_rt_dense_table(compact_rt_context *ctx, const compact_rt_config *config,
                                         const compact_rt_shape *shape, int32_t exec_group_size,
                                         const int32_t *ctx_lens, int32_t *table, int32_t *counts,
                                         void *stream);

/* compact.paged_attention over the tables (scale <= 0: 1 / sqrt(D); lse may
 * be NULL). */
compact_rt_status compact_rt_paged_attention(
    compact_rt_context *ctx, const compact_rt_config *config, const compact_rt_shape *shape,
    int32_t exec_group_size, const void *q, const void *k_cache, const void *v_cache,
    const int32_t *page_table, const int32_t *ctx_lens, const int32_t *table,
    const int32_t *counts, float scale, void *out, float *lse, void *stream);

/* Checks the device-side metadata of a call against its shape: context
 * lengths (>= chunk_len, within the page table and the block capacity), page
 * ids (inside the pool, no page used by two sequences or positions). Copies
 * ctx_lens and page_table to the host: it synchronises `stream`. */
compact_rt_status compact_rt_check_metadata(compact_rt_context *ctx,
                                            const compact_rt_config *config,
                                            const compact_rt_shape *shape,
                                            const int32_t *page_table, const int32_t *ctx_lens,
                                            void *stream);

/* Checks block tables as compact_rt_paged_attention reads them: every count
 * in [0, block_capacity], every entry a KV block of its sequence's context
 * ([0, ceil(ctx_lens[b] / block_size))), entries strictly ascending. Copies
 * to the host: it synchronises `stream`. */
compact_rt_status compact_rt_check_tables(compact_rt_context *ctx, const compact_rt_config *config,
                                          const compact_rt_shape *shape, int32_t exec_group_size,
                                          const int32_t *ctx_lens, const int32_t *table,
                                          const int32_t *counts, void *stream);

/* Debug checks (off by default; the environment variable COMPACT_RT_CHECKS=1
 * turns them on for new contexts): every call also runs the checks above on
 * the metadata and tables it reads before launching anything, so bad data
 * gets an error instead of an undefined result. Each call then synchronises
 * its stream: not for the hot path, nor inside CUDA-graph capture. In a dry
 * run the checks read ctx_lens, page_table, table and counts as host memory. */
compact_rt_status compact_rt_set_checks(compact_rt_context *ctx, int enabled);

/*===----------------------------------------------------------------------===*
 * Chunked prefill plan: one call per layer and chunk
 *===----------------------------------------------------------------------===*/

/* How a layer runs its chunks. */
typedef struct {
  compact_rt_config config;
  int32_t exec_group_size;        /* s: query heads per block table (divides Hq / Hkv) */
  compact_rt_selection selection; /* the FlashPrefill selector */
  float scale;                    /* <= 0: 1 / sqrt(head_dim) */
  int32_t max_batch;              /* sizes the plan's workspace (tables, counts) */
  int32_t block_capacity;         /* Kb of pooled keys and tables */
  int32_t per_query_block;        /* 1: one table per execution group and query block (see
                                     compact_rt_shape); needs max_chunk_len */
  int32_t max_chunk_len;          /* with per_query_block: the longest chunk (sizes the tables) */
  float group_slack;              /* > 0 (with exec_group_size 1): the execution group size is
                                     chosen on the device per KV group and table row, the
                                     largest whose work is within (1 + group_slack) of per-head
                                     tables' (compact_rt_choose_exec_groups); 0: off */
} compact_rt_plan_desc;

typedef struct compact_rt_plan compact_rt_plan;

compact_rt_status compact_rt_plan_create(compact_rt_context *ctx, const compact_rt_plan_desc *desc,
                                         compact_rt_plan **out);
void compact_rt_plan_destroy(compact_rt_plan *plan);

/* One chunk of B sequences:
 *   append_kv (k_new, v_new -> k/v cache at positions [L - C, L)),
 *   pool_keys (the chunk's blocks of `pooled`, the per-sequence cache of
 *              mean-pooled keys that later chunks read),
 *   score_select_union (the group tables; skipped when every prefix block
 *              would be kept anyway, see below),
 *   choose_exec_groups (with group_slack > 0, after score_select_union),
 *   paged_attention -> out (and lse when not NULL),
 * all on `stream`, with no host synchronisation (capturable in a graph).
 *
 * `max_prefix_len` is the longest prefix (L_b - C) in the batch, which an
 * engine knows when it schedules the chunk. While the blocks the chunk's
 * first query block sees are at most sink + window, its sink and window keep
 * all of them, and with one table per group (the union over query blocks,
 * which holds the whole chunk) selection would keep every block; the plan
 * writes dense tables instead and skips the scoring: the first chunk of a
 * prompt runs dense. (With one table per query block the later query blocks
 * then keep blocks the selector might have dropped: more faithful, at the
 * cost of a dense chunk.) Otherwise the chunk is selected; a dense union
 * costs the same attention as the dense path, so nothing else switches. */
compact_rt_status compact_rt_prefill_chunk(compact_rt_plan *plan, const compact_rt_shape *shape,
                                           int32_t max_prefix_len, const void *q,
                                           const void *k_new, const void *v_new, void *k_cache,
                                           void *v_cache, const int32_t *page_table,
                                           const int32_t *ctx_lens, void *pooled, void *out,
                                           float *lse, void *stream);

/* The plan's last tables and counts ([B, R, Kb], [B, R] int32 for the last
 * chunk's B, R = Hq / s, times Qb with per_query_block; device memory owned by
 * the plan): for statistics. */
const int32_t *compact_rt_plan_table(const compact_rt_plan *plan);
const int32_t *compact_rt_plan_counts(const compact_rt_plan *plan);

/*===----------------------------------------------------------------------===*
 * Paged KV cache pool (host-side page bookkeeping)
 *===----------------------------------------------------------------------===*/

/* Hands out the pages of a cache of `num_pages` pages to sequences and writes
 * their page tables; the K / V memory itself belongs to the caller. A page
 * belongs to one sequence at a time. */
typedef struct compact_rt_page_pool compact_rt_page_pool;

compact_rt_status compact_rt_page_pool_create(int32_t num_pages, int32_t page_size,
                                              int32_t max_pages_per_seq,
                                              compact_rt_page_pool **out);
void compact_rt_page_pool_destroy(compact_rt_page_pool *pool);
/* Makes room for `num_tokens` tokens of sequence `seq` (a non-negative id the
 * caller chooses): allocates the pages it lacks. Fails, allocating nothing,
 * when the pool or the page table row is exhausted. */
compact_rt_status compact_rt_page_pool_reserve(compact_rt_page_pool *pool, int64_t seq,
                                               int32_t num_tokens);
/* Returns the pages of sequence `seq` to the pool. */
compact_rt_status compact_rt_page_pool_release(compact_rt_page_pool *pool, int64_t seq);
/* Writes the page table row of `seq` (max_pages_per_seq int32, -1 past its
 * pages) to host memory `row`. */
compact_rt_status compact_rt_page_pool_table(const compact_rt_page_pool *pool, int64_t seq,
                                             int32_t *row);
int32_t compact_rt_page_pool_free_pages(const compact_rt_page_pool *pool);

#ifdef __cplusplus
}
#endif

#endif /* COMPACT_RT_H */
