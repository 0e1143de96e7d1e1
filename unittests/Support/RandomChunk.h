//===- RandomChunk.h - random chunk-step problems for tests -----*- C++ -*-===//

#ifndef COMPACT_UNITTESTS_SUPPORT_RANDOMCHUNK_H
#define COMPACT_UNITTESTS_SUPPORT_RANDOMCHUNK_H

#include "compact/Reference/Reference.h"
#include "compact/Reference/Workload.h"

#include <random>
#include <vector>

namespace compact::test {

/// A random chunk step: shapes, lengths (not multiples of the block size),
/// a shuffled page table over a paged K/V cache filled with random data.
struct RandomChunk {
  ref::ChunkShape shape;
  ref::PagedCache cache;
  std::vector<int32_t> ctxLens, pageTable;
  std::vector<float> q, kCache, vCache;

  RandomChunk(std::mt19937_64 &rng, int64_t maxPrefix = 700) {
    auto pick = [&](std::initializer_list<int64_t> xs) {
      return *(xs.begin() + rng() % xs.size());
    };
    shape.batch = 1 + int64_t(rng() % 3);
    shape.kvHeads = pick({1, 2, 4});
    shape.qHeads = shape.kvHeads * pick({1, 2, 4, 8});
    shape.headDim = pick({8, 16, 32});
    cache.pageSize = pick({4, 8, 16});
    shape.blockSize = cache.pageSize * pick({1, 2, 4});
    shape.chunkLen = 1 + int64_t(rng() % 200);
    int64_t maxLen = 0;
    for (int64_t b = 0; b < shape.batch; ++b) {
      ctxLens.push_back(int32_t(shape.chunkLen + int64_t(rng() % (maxPrefix + 1))));
      maxLen = std::max<int64_t>(maxLen, ctxLens.back());
    }
    shape.blockCapacity = ceilDiv(maxLen, shape.blockSize) + int64_t(rng() % 3);
    cache.layout = rng() % 2 ? ref::KVLayout::NHD : ref::KVLayout::HND;
    cache.kvHeads = shape.kvHeads;
    cache.headDim = shape.headDim;
    cache.maxPagesPerSeq = ceilDiv(maxLen, cache.pageSize) + 1;
    cache.numPages = cache.maxPagesPerSeq * shape.batch + 3;
    std::vector<int64_t> lens(ctxLens.begin(), ctxLens.end());
    ref::makePageTable(lens, cache.pageSize, cache.numPages, cache.maxPagesPerSeq,
                       rng(), pageTable);
    std::normal_distribution<float> normal;
    auto fill = [&](std::vector<float> &x, size_t n) {
      x.resize(n);
      for (float &e : x)
        e = normal(rng);
    };
    fill(q, size_t(shape.batch) * shape.chunkLen * shape.qHeads * shape.headDim);
    fill(kCache, cache.numElements());
    fill(vCache, cache.numElements());
  }

  SeqGeometry seq(int64_t b) const { return shape.seq(ctxLens.data(), b); }
  size_t maskSize() const {
    return size_t(shape.batch) * shape.qHeads * shape.queryBlocks() *
           shape.blockCapacity;
  }
  /// A divisor of G chosen at random: the execution group size.
  int64_t randomExecGroup(std::mt19937_64 &rng) const {
    std::vector<int64_t> divisors;
    for (int64_t s = 1; s <= shape.groupSize(); ++s)
      if (shape.groupSize() % s == 0)
        divisors.push_back(s);
    return divisors[rng() % divisors.size()];
  }
  /// Key of token `pos` of sequence `b`, KV head `h`.
  const float *key(int64_t b, int64_t pos, int64_t h) const {
    return kCache.data() + cache.tokenOffset(pageTable.data(), b, pos, h);
  }
  const float *value(int64_t b, int64_t pos, int64_t h) const {
    return vCache.data() + cache.tokenOffset(pageTable.data(), b, pos, h);
  }
};

} // namespace compact::test

#endif // COMPACT_UNITTESTS_SUPPORT_RANDOMCHUNK_H
