//===- Context.h - the runtime's context, shared by its sources -*- C++ -*-===//

#ifndef COMPACT_RUNTIME_CONTEXT_H
#define COMPACT_RUNTIME_CONTEXT_H

#include "Driver.h"

#include <mutex>
#include <string>
#include <unordered_map>

struct compact_rt_context {
  const compact::rt::Driver *driver = nullptr;
  compact::rt::CUdevice device = 0;
  compact::rt::CUcontext primary = nullptr;
  compact::rt::CUmodule module = nullptr;
  int maxSharedOptIn = 48 * 1024;
  std::mutex mutex;
  std::unordered_map<std::string, compact::rt::CUfunction> functions;
  std::unordered_map<compact::rt::CUfunction, int> sharedLimit;
  compact::rt::CUdeviceptr lseScratch = 0;
  size_t lseScratchBytes = 0;
  /// paged_attention (wgmma) or paged_attention_mma (mma.sync).
  std::string attentionOp = "paged_attention";
  /// Dry run: no device; launches are recorded here.
  bool dryRun = false;
  std::string launchLog;
};

namespace compact::rt {

/// Records `message` as the calling thread's last error and returns `status`.
int setError(int status, std::string message);

/// Device memory of the context (a fake, never dereferenced address in a dry
/// run). Returns 0 and sets the error on failure.
CUdeviceptr allocate(compact_rt_context *ctx, size_t bytes, const char *what);
void release(compact_rt_context *ctx, CUdeviceptr pointer);

} // namespace compact::rt

#endif // COMPACT_RUNTIME_CONTEXT_H
