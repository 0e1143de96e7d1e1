//===- Context.h - the runtime's context, shared by its sources -*- C++ -*-===//

#ifndef COMPACT_RUNTIME_CONTEXT_H
#define COMPACT_RUNTIME_CONTEXT_H

#include "compact_rt.h"

#include "Driver.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

struct compact_rt_context {
  const compact::rt::Driver *driver = nullptr;
  compact::rt::CUdevice device = 0;
  compact::rt::CUcontext primary = nullptr;
  compact::rt::CUmodule module = nullptr;
  int maxSharedOptIn = 48 * 1024;
  std::mutex mutex;
  std::unordered_map<std::string, compact::rt::CUfunction> functions;
  std::unordered_map<compact::rt::CUfunction, int> sharedLimit;
  int multiprocessors = 132; // H200; the device's count once created
  /// Scratch of paged_attention (the lse a caller does not want, the split
  /// workspace), one per stream so calls on different streams never share
  /// it; grown when a call needs more.
  struct Scratch {
    compact::rt::CUdeviceptr pointer = 0;
    size_t bytes = 0;
  };
  std::unordered_map<void *, Scratch> scratch;
  /// The TMA tensor maps of the calls so far, in device memory, by what they
  /// encode (buffer address, dtype, shape, box: a buffer freed and another
  /// allocated at its address with its shape has the same map); kept until
  /// the context is destroyed, since a launch still in flight may read any of
  /// them (one entry per cache buffer an engine uses). Guarded by `mutex`.
  std::map<std::vector<uint64_t>, compact::rt::CUdeviceptr> tensorMaps;
  /// Split-KV: 0 chooses from the work (compact::rt::kvSplitsFor), n >= 1
  /// pins it (1: never split).
  int kvSplits = 0;
  /// Clusters of attention blocks (compact_rt_clusters).
  int clusters = COMPACT_RT_CLUSTERS_AUTO;
  /// paged_attention (wgmma) or paged_attention_mma (mma.sync).
  std::string attentionOp = "paged_attention";
  /// Dry run: no device; launches are recorded here.
  bool dryRun = false;
  std::string launchLog;
  /// Debug checks (compact_rt_set_checks): every call also validates the
  /// device-side metadata and tables it reads, synchronising its stream.
  bool checks = false;
};

namespace compact::rt {

/// The device address of a tensor map over the row-major buffer `pointer`
/// of `shape` (dtype elements) with boxes of `box` (memref order), 128-byte
/// swizzle, out-of-bounds elements read as zero (what the kernels' TMA copies
/// expect, see the kernel library manifest). Encoded and copied to the device
/// the first time (a blocking 128-byte copy), then reused. Empty with `error`
/// set when the driver cannot encode it.
CUdeviceptr tensorMapFor(compact_rt_context *ctx, const void *pointer,
                         const std::vector<int64_t> &shape, const int64_t *box,
                         compact_rt_dtype dtype, std::string &error);

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Block-table rows per sequence of a call: E = Hq / s execution groups,
/// times Qb = ceil(C / block_size) with one table per query block.
inline int64_t tableRows(const compact_rt_config &config, const compact_rt_shape &shape,
                         int64_t execGroupSize) {
  return config.q_heads / execGroupSize *
         (shape.per_query_block ? ceilDiv(shape.chunk_len, config.block_size) : 1);
}

/// Most splits of one attention call's table walks.
constexpr int64_t kMaxKVSplits = 16;

/// How many parts to split each row tile's table walk into when only
/// `blocks` blocks of the attention kernel would run on `multiprocessors`
/// SMs (one block per SM): the S that minimises the predicted time, waves
/// ceil(blocks * S / SMs) of walks 1 / S as long, plus a small cost per
/// split (its prologue, partial write and merge). At most kMaxKVSplits, and
/// at most one split per 4 KV blocks of capacity. 1 when the grid fills the
/// GPU.
inline int64_t kvSplitsFor(int64_t blocks, int64_t multiprocessors, int64_t blockCapacity) {
  if (blocks <= 0 || blocks >= multiprocessors)
    return 1;
  int64_t limit = std::min<int64_t>(kMaxKVSplits, std::max<int64_t>(1, blockCapacity / 4));
  int64_t best = 1;
  double bestCost = 1.0;
  for (int64_t s = 2; s <= limit; ++s) {
    double cost = double(ceilDiv(blocks * s, multiprocessors)) / double(s) + 0.02 * double(s);
    if (cost < bestCost - 1e-9) {
      best = s;
      bestCost = cost;
    }
  }
  return best;
}

/// How the entry points run for the plan, which checks every op of a chunk
/// before it launches any (so a bad argument writes nothing).
enum class CallMode {
  Launch,         // validate (with the context's data checks), then launch
  ValidateOnly,   // validate, launch nothing; the tables are the plan's own
  LaunchValidated // launch; the data checks already ran in ValidateOnly
};
/// The calling thread's mode (Launch outside a plan).
CallMode &callMode();

/// Makes the context's device current for the scope of a call.
class ScopedContext {
public:
  explicit ScopedContext(compact_rt_context *ctx) : ctx(ctx) {
    ok = ctx->driver->cuCtxPushCurrent(ctx->primary) == CUDA_SUCCESS;
  }
  ~ScopedContext() {
    if (ok) {
      CUcontext popped;
      ctx->driver->cuCtxPopCurrent(&popped);
    }
  }
  ScopedContext(const ScopedContext &) = delete;
  ScopedContext &operator=(const ScopedContext &) = delete;
  bool ok;

private:
  compact_rt_context *ctx;
};

/// The kernel library's key of a configuration (q16_kv4_d128_p64_b128_bf16_nhd).
std::string configKey(const compact_rt_config &config);
/// What the kernel library holds: each configuration and its execution group
/// sizes, for error messages.
std::string libraryContents();

/// Records `message` as the calling thread's last error and returns `status`.
int setError(int status, std::string message);

/// Device memory of the context (a fake, never dereferenced address in a dry
/// run). Returns 0 and sets the error on failure.
CUdeviceptr allocate(compact_rt_context *ctx, size_t bytes, const char *what);
void release(compact_rt_context *ctx, CUdeviceptr pointer);

} // namespace compact::rt

#endif // COMPACT_RUNTIME_CONTEXT_H
