//===- Plan.cpp - chunked prefill of one layer, one call per chunk --------===//

#include "compact_rt.h"

#include "Checks.h"
#include "Context.h"

#include <algorithm>
#include <string>

using namespace compact::rt;

struct compact_rt_plan {
  compact_rt_context *ctx;
  compact_rt_plan_desc desc;
  CUdeviceptr table = 0, counts = 0;
};

namespace {

compact_rt_status planError(compact_rt_status status, const std::string &message) {
  return compact_rt_status(setError(status, message));
}
} // namespace

extern "C" compact_rt_status compact_rt_plan_create(compact_rt_context *ctx,
                                                    const compact_rt_plan_desc *desc,
                                                    compact_rt_plan **out) {
  if (!out)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_plan_create: argument 'out' must not be NULL");
  *out = nullptr;
  if (!ctx)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_plan_create: argument 'ctx' must not be NULL");
  if (!desc)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_plan_create: argument 'desc' must not be NULL");
  const compact_rt_config &c = desc->config;
  if (c.q_heads <= 0 || c.kv_heads <= 0 || c.q_heads % c.kv_heads != 0)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_plan_create: desc->config.q_heads must be a positive multiple "
                     "of desc->config.kv_heads");
  int32_t g = c.q_heads / c.kv_heads;
  if (desc->exec_group_size <= 0 || g % desc->exec_group_size != 0)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_plan_create: desc->exec_group_size (" +
                         std::to_string(desc->exec_group_size) +
                         ") must divide q_heads / kv_heads (" + std::to_string(g) + ")");
  if (desc->max_batch <= 0 || desc->block_capacity <= 0)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_plan_create: desc->max_batch and desc->block_capacity must be "
                     "positive");
  if (desc->per_query_block != 0 && desc->per_query_block != 1)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_plan_create: desc->per_query_block must be 0 or 1, got " +
                         std::to_string(desc->per_query_block));
  if (desc->per_query_block && desc->max_chunk_len <= 0)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_plan_create: desc->max_chunk_len must be positive with "
                     "desc->per_query_block (it sizes the tables), got " +
                         std::to_string(desc->max_chunk_len));
  if (desc->per_query_block && (int64_t(c.block_size) * desc->exec_group_size) % 128 != 0)
    return planError(COMPACT_RT_UNSUPPORTED,
                     "compact_rt_plan_create: desc->per_query_block needs config.block_size * "
                     "exec_group_size (" +
                         std::to_string(c.block_size) + " * " +
                         std::to_string(desc->exec_group_size) +
                         ") to be a multiple of 128, the attention kernel's row tile");
  if (!(desc->selection.alpha > 0.0f && desc->selection.alpha <= 1.0f) ||
      desc->selection.sink < 0 || desc->selection.window < 0)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_plan_create: desc->selection needs alpha in (0, 1] and "
                     "non-negative sink and window");
  if (std::string wrong = checkSlack("desc->group_slack", desc->group_slack); !wrong.empty())
    return planError(COMPACT_RT_INVALID_ARGUMENT, "compact_rt_plan_create: " + wrong);
  if (desc->group_slack > 0.0f && desc->exec_group_size != 1)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_plan_create: desc->group_slack > 0 chooses the execution group "
                     "size on the device from per-head tables: desc->exec_group_size must be 1, "
                     "got " + std::to_string(desc->exec_group_size));
  if (!compact_rt_supports(ctx, &c, desc->exec_group_size))
    return planError(COMPACT_RT_UNSUPPORTED,
                     "compact_rt_plan_create: the kernel library has no kernels for "
                     "desc->config " + configKey(c) + " with desc->exec_group_size " +
                         std::to_string(desc->exec_group_size) + "; it holds " +
                         libraryContents() + " (more: compact-codegen --config)");
  auto plan = new compact_rt_plan{ctx, *desc};
  size_t rowsPerGroup =
      desc->per_query_block ? size_t(ceilDiv(desc->max_chunk_len, c.block_size)) : 1;
  size_t groups = size_t(desc->max_batch) * (c.q_heads / desc->exec_group_size) * rowsPerGroup;
  plan->table = allocate(ctx, groups * desc->block_capacity * 4, "the plan's tables");
  plan->counts = plan->table ? allocate(ctx, groups * 4, "the plan's counts") : 0;
  if (!plan->table || !plan->counts) {
    release(ctx, plan->table);
    delete plan;
    return COMPACT_RT_CUDA_ERROR;
  }
  *out = plan;
  return COMPACT_RT_OK;
}

extern "C" void compact_rt_plan_destroy(compact_rt_plan *plan) {
  if (!plan)
    return;
  release(plan->ctx, plan->table);
  release(plan->ctx, plan->counts);
  delete plan;
}

extern "C" const int32_t *compact_rt_plan_table(const compact_rt_plan *plan) {
  return plan ? reinterpret_cast<const int32_t *>(uintptr_t(plan->table)) : nullptr;
}

extern "C" const int32_t *compact_rt_plan_counts(const compact_rt_plan *plan) {
  return plan ? reinterpret_cast<const int32_t *>(uintptr_t(plan->counts)) : nullptr;
}

extern "C" compact_rt_status compact_rt_prefill_chunk(
    compact_rt_plan *plan, const compact_rt_shape *shape, int32_t max_prefix_len, const void *q,
    const void *k_new, const void *v_new, void *k_cache, void *v_cache, const int32_t *page_table,
    const int32_t *ctx_lens, void *pooled, void *out, float *lse, void *stream) {
  if (!plan)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_prefill_chunk: argument 'plan' must not be NULL");
  if (!shape)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_prefill_chunk: argument 'shape' must not be NULL");
  const compact_rt_plan_desc &d = plan->desc;
  if (shape->batch > d.max_batch)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_prefill_chunk: shape->batch (" + std::to_string(shape->batch) +
                         ") exceeds the plan's max_batch (" + std::to_string(d.max_batch) + ")");
  if (shape->block_capacity != d.block_capacity)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_prefill_chunk: shape->block_capacity (" +
                         std::to_string(shape->block_capacity) + ") must be the plan's (" +
                         std::to_string(d.block_capacity) + ")");
  if (max_prefix_len < 0)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_prefill_chunk: argument 'max_prefix_len' must be non-negative");
  if (d.per_query_block && shape->chunk_len > d.max_chunk_len)
    return planError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_prefill_chunk: shape->chunk_len (" +
                         std::to_string(shape->chunk_len) + ") exceeds the plan's max_chunk_len (" +
                         std::to_string(d.max_chunk_len) + ")");
  // The plan's table layout, whatever the caller's shape says.
  compact_rt_shape planShape = *shape;
  planShape.per_query_block = d.per_query_block;
  shape = &planShape;
  compact_rt_context *ctx = plan->ctx;
  const compact_rt_config *c = &d.config;
  const int32_t s = d.exec_group_size;
  auto *table = reinterpret_cast<int32_t *>(uintptr_t(plan->table));
  auto *counts = reinterpret_cast<int32_t *>(uintptr_t(plan->counts));
  // While the first query block's window reaches back past the sink, every
  // prefix block would be selected: write dense tables, skip the scoring.
  int64_t firstLast =
      (int64_t(max_prefix_len) + std::min<int64_t>(c->block_size, shape->chunk_len) - 1) /
      c->block_size;
  bool dense = firstLast < int64_t(d.selection.sink) + d.selection.window;
  auto runChunk = [&]() {
    compact_rt_status status = compact_rt_append_kv(ctx, c, shape, k_new, v_new, page_table,
                                                    ctx_lens, k_cache, v_cache, stream);
    if (status == COMPACT_RT_OK)
      status = compact_rt_pool_keys(ctx, c, shape, k_cache, page_table, ctx_lens, pooled, stream);
    if (status == COMPACT_RT_OK)
      status = dense ? compact_rt_dense_table(ctx, c, shape, s, ctx_lens, table, counts, stream)
                     : compact_rt_score_select_union(ctx, c, shape, s, q, pooled, ctx_lens,
                                                     d.scale, &d.selection, table, counts,
                                                     stream);
    if (status == COMPACT_RT_OK && !dense && d.group_slack > 0.0f)
      status = compact_rt_choose_exec_groups(ctx, c, shape, d.group_slack, table, counts, stream);
    if (status == COMPACT_RT_OK)
      status = compact_rt_paged_attention(ctx, c, shape, s, q, k_cache, v_cache, page_table,
                                          ctx_lens, table, counts, d.scale, out, lse, stream);
    return status;
  };
  // Every op of the chunk is validated before the first launches, so a bad
  // argument of a later op leaves the cache and `pooled` untouched.
  struct ModeScope {
    explicit ModeScope(CallMode mode) { callMode() = mode; }
    ~ModeScope() { callMode() = CallMode::Launch; }
  };
  {
    ModeScope validate(CallMode::ValidateOnly);
    if (compact_rt_status status = runChunk())
      return status;
  }
  ModeScope launch(CallMode::LaunchValidated);
  return runChunk();
}
