//===- Checks.cpp - checks of device-side metadata and tables -------------===//

#include "Checks.h"

#include "Context.h"

#include <cmath>
#include <cstring>
#include <set>

using namespace compact::rt;

namespace {

std::string at(const char *name, int64_t i) {
  return std::string(name) + "[" + std::to_string(i) + "]";
}
std::string at(const char *name, int64_t i, int64_t j) {
  return at(name, i) + "[" + std::to_string(j) + "]";
}

/// `bytes` of device memory at `src` into `dst`; a dry run reads host memory.
std::string copyToHost(compact_rt_context *ctx, void *dst, const void *src, size_t bytes,
                       void *stream) {
  if (ctx->dryRun) {
    std::memcpy(dst, src, bytes);
    return "";
  }
  const Driver &d = *ctx->driver;
  ScopedContext scope(ctx);
  if (!scope.ok)
    return "cannot make the device's primary context current";
  auto s = static_cast<CUstream>(stream);
  CUresult r = d.cuMemcpyDtoHAsync(dst, CUdeviceptr(uintptr_t(src)), bytes, s);
  if (r == CUDA_SUCCESS)
    r = d.cuStreamSynchronize(s);
  return r == CUDA_SUCCESS ? "" : "copying the metadata to the host: " + d.describe(r);
}

} // namespace

std::string compact::rt::checkSlack(const char *name, float slack) {
  if (std::isfinite(slack) && slack >= 0.0f)
    return "";
  return std::string(name) + " must be finite and >= 0, got " + std::to_string(slack);
}

std::string compact::rt::checkLens(const compact_rt_config &config, const compact_rt_shape &shape,
                                   const std::vector<int32_t> &lens) {
  for (int64_t b = 0; b < shape.batch; ++b) {
    int64_t len = lens[b];
    std::string value = at("ctx_lens", b) + " (" + std::to_string(len) + ")";
    if (len < shape.chunk_len)
      return value + " must be at least shape->chunk_len (" + std::to_string(shape.chunk_len) +
             "): the length counts the chunk";
    if (ceilDiv(len, config.block_size) > shape.block_capacity)
      return value + " needs " + std::to_string(ceilDiv(len, config.block_size)) +
             " KV blocks, more than shape->block_capacity (" +
             std::to_string(shape.block_capacity) + ")";
    if (ceilDiv(len, config.page_size) > shape.max_pages_per_seq)
      return value + " needs " + std::to_string(ceilDiv(len, config.page_size)) +
             " pages, more than shape->max_pages_per_seq (" +
             std::to_string(shape.max_pages_per_seq) + ")";
  }
  return "";
}

std::string compact::rt::checkPages(const compact_rt_config &config, const compact_rt_shape &shape,
                                    const std::vector<int32_t> &lens,
                                    const std::vector<int32_t> &pages) {
  std::set<int32_t> used;
  for (int64_t b = 0; b < shape.batch; ++b) {
    int64_t need = ceilDiv(lens[b], config.page_size);
    for (int64_t i = 0; i < need; ++i) {
      int32_t page = pages[size_t(b) * shape.max_pages_per_seq + i];
      if (page < 0 || page >= shape.num_pages)
        return at("page_table", b, i) + " (" + std::to_string(page) +
               ") must be in [0, shape->num_pages = " + std::to_string(shape.num_pages) + ")";
      if (!used.insert(page).second)
        return at("page_table", b, i) + ": page " + std::to_string(page) +
               " is also used by another sequence or position (page tables alias)";
    }
  }
  return "";
}

std::string compact::rt::checkTables(const compact_rt_config &config,
                                     const compact_rt_shape &shape, int32_t execGroupSize,
                                     const std::vector<int32_t> &lens,
                                     const std::vector<int32_t> &table,
                                     const std::vector<int32_t> &counts) {
  int64_t rows = tableRows(config, shape, execGroupSize);
  int64_t kb = shape.block_capacity;
  for (int64_t b = 0; b < shape.batch; ++b) {
    int64_t blocks = ceilDiv(lens[b], config.block_size);
    for (int64_t r = 0; r < rows; ++r) {
      int64_t count = counts[size_t(b * rows + r)];
      if (count < 0 || count > kb)
        return at("counts", b, r) + " (" + std::to_string(count) +
               ") must be in [0, shape->block_capacity = " + std::to_string(kb) + "]";
      const int32_t *row = table.data() + (b * rows + r) * kb;
      for (int64_t i = 0; i < count; ++i) {
        if (row[i] < 0 || row[i] >= blocks)
          return at("table", b, r) + "[" + std::to_string(i) + "] (" + std::to_string(row[i]) +
                 ") must be a KV block of the context: in [0, " + std::to_string(blocks) +
                 ") for ctx_lens[" + std::to_string(b) + "] = " + std::to_string(lens[b]);
        if (i > 0 && row[i] <= row[i - 1])
          return at("table", b, r) + "[" + std::to_string(i) + "] (" + std::to_string(row[i]) +
                 ") must be greater than the entry before it (" + std::to_string(row[i - 1]) +
                 "): tables are strictly ascending";
      }
    }
  }
  return "";
}

compact_rt_status compact::rt::checkDeviceData(compact_rt_context *ctx, const char *api,
                                               const compact_rt_config &config,
                                               const compact_rt_shape &shape,
                                               const int32_t *ctxLens, const int32_t *pageTable,
                                               int32_t execGroupSize, const int32_t *table,
                                               const int32_t *counts, void *stream) {
  auto failWith = [&](compact_rt_status s, const std::string &what) {
    return compact_rt_status(setError(s, std::string(api) + ": " + what));
  };
  std::vector<int32_t> lens(size_t(shape.batch));
  std::string error = copyToHost(ctx, lens.data(), ctxLens, lens.size() * 4, stream);
  if (!error.empty())
    return failWith(COMPACT_RT_CUDA_ERROR, error);
  if (!(error = checkLens(config, shape, lens)).empty())
    return failWith(COMPACT_RT_INVALID_ARGUMENT, error);
  if (pageTable) {
    std::vector<int32_t> pages(size_t(shape.batch) * shape.max_pages_per_seq);
    error = copyToHost(ctx, pages.data(), pageTable, pages.size() * 4, stream);
    if (!error.empty())
      return failWith(COMPACT_RT_CUDA_ERROR, error);
    if (!(error = checkPages(config, shape, lens, pages)).empty())
      return failWith(COMPACT_RT_INVALID_ARGUMENT, error);
  }
  if (table) {
    size_t rows = size_t(shape.batch) * tableRows(config, shape, execGroupSize);
    std::vector<int32_t> hostCounts(rows), hostTable(rows * shape.block_capacity);
    error = copyToHost(ctx, hostCounts.data(), counts, hostCounts.size() * 4, stream);
    if (error.empty())
      error = copyToHost(ctx, hostTable.data(), table, hostTable.size() * 4, stream);
    if (!error.empty())
      return failWith(COMPACT_RT_CUDA_ERROR, error);
    error = checkTables(config, shape, execGroupSize, lens, hostTable, hostCounts);
    if (!error.empty())
      return failWith(COMPACT_RT_INVALID_ARGUMENT, error);
  }
  return COMPACT_RT_OK;
}
