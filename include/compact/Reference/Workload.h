//===- Workload.h - the standard "planted retrieval" inputs -----*- C++ -*-===//
//
// The workload of BENCH.md: Q, K, V standard normal; for each (sequence,
// query head) a random unit direction u; a fraction `hotFrac` of the KV
// blocks of that head's KV head get `signal * u` added to every key, and every
// query of the head gets `signal * u` added. The selector has real structure
// to find, and different heads of a group want different blocks.
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_REFERENCE_WORKLOAD_H
#define COMPACT_REFERENCE_WORKLOAD_H

#include "compact/Reference/Reference.h"

#include <cstdint>
#include <vector>

namespace compact::ref {

struct PlantedRetrievalConfig {
  int64_t qHeads = 16, kvHeads = 4, headDim = 128;
  int64_t blockSize = 128;
  double hotFrac = 0.04;
  float signal = 8.0f;
  uint64_t seed = 0;
};

/// A whole prompt per sequence: q [B, Lmax, Hq, D], k/v [B, Lmax, Hkv, D];
/// sequence b has lens[b] valid tokens.
struct Prompt {
  int64_t batch = 0, maxLen = 0, qHeads = 0, kvHeads = 0, headDim = 0;
  std::vector<int64_t> lens;
  std::vector<float> q, k, v;

  const float *qAt(int64_t b, int64_t t) const {
    return q.data() + (size_t(b) * maxLen + t) * qHeads * headDim;
  }
  const float *kAt(int64_t b, int64_t t) const {
    return k.data() + (size_t(b) * maxLen + t) * kvHeads * headDim;
  }
  const float *vAt(int64_t b, int64_t t) const {
    return v.data() + (size_t(b) * maxLen + t) * kvHeads * headDim;
  }
};

Prompt makePlantedRetrieval(const PlantedRetrievalConfig &config,
                            const std::vector<int64_t> &lens);

/// A page table [B, maxPagesPerSeq] giving each sequence enough pages for
/// lens[b] tokens, drawn without replacement from a shuffled pool of
/// `numPages` pages (so logical and physical order differ). Unused entries
/// are -1. Fails (returns false) when the pool is too small.
bool makePageTable(const std::vector<int64_t> &lens, int64_t pageSize,
                   int64_t numPages, int64_t maxPagesPerSeq, uint64_t seed,
                   std::vector<int32_t> &pageTable);

/// Rounds through bfloat16 (round to nearest even), as a GPU run would see
/// the same data.
float roundToBF16(float x);
void roundToBF16(std::vector<float> &data);

} // namespace compact::ref

#endif // COMPACT_REFERENCE_WORKLOAD_H
