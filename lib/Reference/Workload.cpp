//===- Workload.cpp - the standard "planted retrieval" inputs ------------===//

#include "compact/Reference/Workload.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

namespace compact::ref {

Prompt makePlantedRetrieval(const PlantedRetrievalConfig &cfg,
                            const std::vector<int64_t> &lens) {
  Prompt p;
  p.batch = int64_t(lens.size());
  p.maxLen = lens.empty() ? 0 : *std::max_element(lens.begin(), lens.end());
  p.qHeads = cfg.qHeads;
  p.kvHeads = cfg.kvHeads;
  p.headDim = cfg.headDim;
  p.lens = lens;
  const int64_t d = cfg.headDim, g = cfg.qHeads / cfg.kvHeads;
  std::mt19937_64 rng(cfg.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto fill = [&](std::vector<float> &x, size_t n) {
    x.resize(n);
    for (float &e : x)
      e = normal(rng);
  };
  fill(p.q, size_t(p.batch) * p.maxLen * cfg.qHeads * d);
  fill(p.k, size_t(p.batch) * p.maxLen * cfg.kvHeads * d);
  fill(p.v, size_t(p.batch) * p.maxLen * cfg.kvHeads * d);

  std::vector<float> u(d);
  std::vector<int64_t> blocks;
  for (int64_t b = 0; b < p.batch; ++b) {
    int64_t numBlocks = ceilDiv(lens[b], cfg.blockSize);
    for (int64_t h = 0; h < cfg.qHeads; ++h) {
      double norm = 0.0;
      for (float &e : u) {
        e = normal(rng);
        norm += double(e) * e;
      }
      float inv = float(cfg.signal / std::sqrt(norm));
      for (float &e : u)
        e *= inv;
      // Hot blocks of this head, planted in its KV head's keys.
      blocks.resize(numBlocks);
      std::iota(blocks.begin(), blocks.end(), 0);
      std::shuffle(blocks.begin(), blocks.end(), rng);
      int64_t hot = std::min<int64_t>(
          numBlocks, std::max<int64_t>(1, std::llround(cfg.hotFrac * numBlocks)));
      for (int64_t i = 0; i < hot; ++i) {
        int64_t begin = blocks[i] * cfg.blockSize;
        int64_t end = std::min(begin + cfg.blockSize, lens[b]);
        for (int64_t t = begin; t < end; ++t) {
          float *key = p.k.data() + ((size_t(b) * p.maxLen + t) * cfg.kvHeads + h / g) * d;
          for (int64_t i2 = 0; i2 < d; ++i2)
            key[i2] += u[i2];
        }
      }
      for (int64_t t = 0; t < lens[b]; ++t) {
        float *query = p.q.data() + ((size_t(b) * p.maxLen + t) * cfg.qHeads + h) * d;
        for (int64_t i2 = 0; i2 < d; ++i2)
          query[i2] += u[i2];
      }
    }
  }
  return p;
}

bool makePageTable(const std::vector<int64_t> &lens, int64_t pageSize,
                   int64_t numPages, int64_t maxPagesPerSeq, uint64_t seed,
                   std::vector<int32_t> &pageTable) {
  std::vector<int32_t> pool(numPages);
  std::iota(pool.begin(), pool.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(pool.begin(), pool.end(), rng);
  pageTable.assign(lens.size() * maxPagesPerSeq, -1);
  size_t next = 0;
  for (size_t b = 0; b < lens.size(); ++b) {
    int64_t need = ceilDiv(lens[b], pageSize);
    if (need > maxPagesPerSeq || next + need > pool.size())
      return false;
    for (int64_t i = 0; i < need; ++i)
      pageTable[b * maxPagesPerSeq + i] = pool[next++];
  }
  return true;
}

float roundToBF16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) == 0x7f800000u) // inf / nan: keep
    return x;
  bits += 0x7fffu + ((bits >> 16) & 1u);
  bits &= 0xffff0000u;
  std::memcpy(&x, &bits, 4);
  return x;
}

void roundToBF16(std::vector<float> &data) {
  for (float &x : data)
    x = roundToBF16(x);
}

} // namespace compact::ref
