//===- PagePool.cpp - page bookkeeping of a paged KV cache ----------------===//

#include "compact_rt.h"

#include "Context.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

using namespace compact::rt;

struct compact_rt_page_pool {
  int32_t numPages, pageSize, maxPagesPerSeq;
  std::vector<int32_t> free;                               // a stack of free page ids
  std::unordered_map<int64_t, std::vector<int32_t>> pages; // per sequence, in token order
};

namespace {
compact_rt_status poolError(compact_rt_status status, const std::string &message) {
  return compact_rt_status(setError(status, message));
}
} // namespace

extern "C" compact_rt_status compact_rt_page_pool_create(int32_t num_pages, int32_t page_size,
                                                         int32_t max_pages_per_seq,
                                                         compact_rt_page_pool **out) {
  if (!out)
    return poolError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_page_pool_create: argument 'out' must not be NULL");
  *out = nullptr;
  if (num_pages <= 0 || page_size <= 0 || max_pages_per_seq <= 0)
    return poolError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_page_pool_create: 'num_pages', 'page_size' and "
                     "'max_pages_per_seq' must be positive");
  auto pool = new compact_rt_page_pool{num_pages, page_size, max_pages_per_seq, {}, {}};
  pool->free.reserve(num_pages);
  for (int32_t p = num_pages; p-- > 0;)
    pool->free.push_back(p);
  *out = pool;
  return COMPACT_RT_OK;
}

extern "C" void compact_rt_page_pool_destroy(compact_rt_page_pool *pool) { delete pool; }

extern "C" compact_rt_status compact_rt_page_pool_reserve(compact_rt_page_pool *pool, int64_t seq,
                                                          int32_t num_tokens) {
  if (!pool)
    return poolError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_page_pool_reserve: argument 'pool' must not be NULL");
  if (seq < 0 || num_tokens < 0)
    return poolError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_page_pool_reserve: 'seq' and 'num_tokens' must be "
                     "non-negative");
  int64_t need = (int64_t(num_tokens) + pool->pageSize - 1) / pool->pageSize;
  if (need > pool->maxPagesPerSeq)
    return poolError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_page_pool_reserve: " + std::to_string(num_tokens) +
                         " tokens need " + std::to_string(need) +
                         " pages, more than max_pages_per_seq (" +
                         std::to_string(pool->maxPagesPerSeq) + ")");
  std::vector<int32_t> &mine = pool->pages[seq];
  int64_t missing = need - int64_t(mine.size());
  if (missing > int64_t(pool->free.size()))
    return poolError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_page_pool_reserve: the pool is exhausted: sequence " +
                         std::to_string(seq) + " needs " + std::to_string(missing) +
                         " more pages, " + std::to_string(pool->free.size()) + " are free");
  for (int64_t i = 0; i < missing; ++i) {
    mine.push_back(pool->free.back());
    pool->free.pop_back();
  }
  return COMPACT_RT_OK;
}

extern "C" compact_rt_status compact_rt_page_pool_release(compact_rt_page_pool *pool,
                                                          int64_t seq) {
  if (!pool)
    return poolError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_page_pool_release: argument 'pool' must not be NULL");
  auto it = pool->pages.find(seq);
  if (it == pool->pages.end())
    return poolError(COMPACT_RT_INVALID_ARGUMENT, "compact_rt_page_pool_release: sequence " +
                                                      std::to_string(seq) + " holds no pages");
  pool->free.insert(pool->free.end(), it->second.rbegin(), it->second.rend());
  pool->pages.erase(it);
  return COMPACT_RT_OK;
}

extern "C" compact_rt_status compact_rt_page_pool_table(const compact_rt_page_pool *pool,
                                                        int64_t seq, int32_t *row) {
  if (!pool || !row)
    return poolError(COMPACT_RT_INVALID_ARGUMENT,
                     "compact_rt_page_pool_table: arguments 'pool' and 'row' must not be NULL");
  auto it = pool->pages.find(seq);
  if (it == pool->pages.end())
    return poolError(COMPACT_RT_INVALID_ARGUMENT, "compact_rt_page_pool_table: sequence " +
                                                      std::to_string(seq) + " holds no pages");
  std::fill(row, row + pool->maxPagesPerSeq, -1);
  std::copy(it->second.begin(), it->second.end(), row);
  return COMPACT_RT_OK;
}

extern "C" int32_t compact_rt_page_pool_free_pages(const compact_rt_page_pool *pool) {
  return pool ? int32_t(pool->free.size()) : 0;
}
