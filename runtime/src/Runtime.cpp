//===- Runtime.cpp - the compact_rt C API ---------------------------------===//
//
// Validation of every argument (with a message that names it), kernel lookup
// in the generated kernel table, argument packing in MLIR's memref calling
// convention, and launches with the grid rules of the compiler's kernel plans
// (lib/Conversion/CompactToGPU/*.cpp).
//
//===----------------------------------------------------------------------===//

#include "compact_rt.h"

#include "Checks.h"
#include "Context.h"
#include "Driver.h"
#include "KernelTable.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

using namespace compact::rt;

namespace {

thread_local std::string lastError;

compact_rt_status fail(compact_rt_status status, std::string message) {
  lastError = std::move(message);
  return status;
}

uint64_t nextFakeAddress = uint64_t(1) << 40;

thread_local CallMode currentCallMode = CallMode::Launch;

} // namespace

std::string compact::rt::configKey(const compact_rt_config &c) {
  return "q" + std::to_string(c.q_heads) + "_kv" + std::to_string(c.kv_heads) + "_d" +
         std::to_string(c.head_dim) + "_p" + std::to_string(c.page_size) + "_b" +
         std::to_string(c.block_size) + (c.dtype == COMPACT_RT_BF16 ? "_bf16" : "_f16") +
         (c.layout == COMPACT_RT_NHD ? "_nhd" : "_hnd");
}

std::string compact::rt::libraryContents() {
  // config -> its execution group sizes, in library order.
  std::vector<std::pair<std::string, std::set<int64_t>>> configs;
  const KernelImage &image = kernelImage();
  for (size_t i = 0; i < image.numKernels; ++i) {
    const KernelInfo &k = image.kernels[i];
    auto it = std::find_if(configs.begin(), configs.end(),
                           [&](const auto &c) { return c.first == k.config; });
    if (it == configs.end())
      it = configs.insert(configs.end(), {k.config, {}});
    if (k.execGroupSize > 0)
      it->second.insert(k.execGroupSize);
  }
  std::string text;
  for (const auto &[config, sizes] : configs) {
    text += (text.empty() ? "" : "; ") + config + " (exec_group_size";
    for (int64_t s : sizes)
      text += " " + std::to_string(s);
    text += ")";
  }
  return text;
}

namespace {

const KernelInfo *findKernel(const std::string &config, int64_t execGroupSize, const char *op,
                             const char *role) {
  const KernelImage &image = kernelImage();
  for (size_t i = 0; i < image.numKernels; ++i) {
    const KernelInfo &k = image.kernels[i];
    if (config == k.config && std::strcmp(op, k.op) == 0 && std::strcmp(role, k.role) == 0 &&
        (k.execGroupSize == 0 || k.execGroupSize == execGroupSize))
      return &k;
  }
  return nullptr;
}

/// A device buffer with the shape the kernel sees.
struct Buffer {
  const void *pointer;
  std::vector<int64_t> shape;
};

/// Named kernel arguments: buffers, index scalars and f32 scalars.
struct Bindings {
  std::unordered_map<std::string, Buffer> buffers;
  std::unordered_map<std::string, int64_t> indices;
  std::unordered_map<std::string, float> floats;
};

/// One API call: its name (for messages), config, shape, and checks.
class Call {
public:
  Call(compact_rt_context *ctx, const char *api, const compact_rt_config *config,
       const compact_rt_shape *shape)
      : ctx(ctx), api(api), config(config), shape(shape) {}

  compact_rt_status status = COMPACT_RT_OK;

  bool failed() const { return status != COMPACT_RT_OK; }

  void error(compact_rt_status s, const std::string &message) {
    if (!failed())
      status = fail(s, std::string(api) + ": " + message);
  }

  /// The context, config and shape themselves.
  void checkBasics(int32_t execGroupSize = 0) {
    if (!ctx)
      return error(COMPACT_RT_INVALID_ARGUMENT, "argument 'ctx' must not be NULL");
    if (!config)
      return error(COMPACT_RT_INVALID_ARGUMENT, "argument 'config' must not be NULL");
    if (!shape)
      return error(COMPACT_RT_INVALID_ARGUMENT, "argument 'shape' must not be NULL");
    const compact_rt_config &c = *config;
    if (c.q_heads <= 0 || c.kv_heads <= 0 || c.q_heads % c.kv_heads != 0)
      return error(COMPACT_RT_INVALID_ARGUMENT,
                   "config->q_heads (" + std::to_string(c.q_heads) +
                       ") must be a positive multiple of config->kv_heads (" +
                       std::to_string(c.kv_heads) + ")");
    if (c.head_dim <= 0 || c.page_size <= 0 || c.block_size <= 0 ||
        c.block_size % c.page_size != 0)
      return error(COMPACT_RT_INVALID_ARGUMENT,
                   "config->block_size (" + std::to_string(c.block_size) +
                       ") must be a positive multiple of config->page_size (" +
                       std::to_string(c.page_size) + ")");
    if (c.dtype != COMPACT_RT_BF16 && c.dtype != COMPACT_RT_F16)
      return error(COMPACT_RT_INVALID_ARGUMENT, "config->dtype must be COMPACT_RT_BF16 or "
                                                "COMPACT_RT_F16");
    if (c.layout != COMPACT_RT_NHD && c.layout != COMPACT_RT_HND)
      return error(COMPACT_RT_INVALID_ARGUMENT, "config->layout must be COMPACT_RT_NHD or "
                                                "COMPACT_RT_HND");
    const compact_rt_shape &s = *shape;
    auto positive = [&](int32_t v, const char *name) {
      if (v <= 0)
        error(COMPACT_RT_INVALID_ARGUMENT,
              std::string("shape->") + name + " must be positive, got " + std::to_string(v));
    };
    positive(s.batch, "batch");
    positive(s.chunk_len, "chunk_len");
    positive(s.num_pages, "num_pages");
    positive(s.max_pages_per_seq, "max_pages_per_seq");
    positive(s.block_capacity, "block_capacity");
    if (failed())
      return;
    if (s.per_query_block != 0 && s.per_query_block != 1)
      return error(COMPACT_RT_INVALID_ARGUMENT,
                   "shape->per_query_block must be 0 (one table per execution group) or 1 (one "
                   "per execution group and query block), got " +
                       std::to_string(s.per_query_block));
    if (int64_t(s.block_capacity) * c.block_size <
        int64_t(s.chunk_len))
      return error(COMPACT_RT_INVALID_ARGUMENT,
                   "shape->block_capacity (" + std::to_string(s.block_capacity) +
                       ") holds fewer tokens than shape->chunk_len (" +
                       std::to_string(s.chunk_len) + ")");
    if (int64_t(s.max_pages_per_seq) * c.page_size < int64_t(s.chunk_len))
      return error(COMPACT_RT_INVALID_ARGUMENT,
                   "shape->max_pages_per_seq (" + std::to_string(s.max_pages_per_seq) +
                       ") holds fewer tokens than shape->chunk_len");
    if (execGroupSize != 0) {
      int32_t g = c.q_heads / c.kv_heads;
      if (execGroupSize <= 0 || g % execGroupSize != 0)
        return error(COMPACT_RT_INVALID_ARGUMENT,
                     "argument 'exec_group_size' (" + std::to_string(execGroupSize) +
                         ") must divide q_heads / kv_heads (" + std::to_string(g) + ")");
    }
  }

  /// A device pointer: not NULL and aligned to `alignment` bytes.
  /// The context lengths, tables and counts of the table ops: checks the
  /// pointers, then binds them under the kernels' argument names.
  void tableArgs(Bindings &b, const int32_t *ctxLens, const int32_t *tablePtr,
                 const int32_t *countsPtr, int64_t s, const char *tableArg = "table",
                 const char *countsArg = "counts") {
    pointer(ctxLens, "ctx_lens", 4);
    pointer(tablePtr, "table", 4);
    pointer(countsPtr, "counts", 4);
    if (failed())
      return;
    b.buffers["ctx_lens"] = {ctxLens, lens()};
    b.buffers[tableArg] = {tablePtr, table(s)};
    b.buffers[countsArg] = {countsPtr, counts(s)};
  }

  void pointer(const void *p, const char *name, size_t alignment) {
    if (failed())
      return;
    if (!p)
      return error(COMPACT_RT_INVALID_ARGUMENT,
                   std::string("argument '") + name + "' must not be NULL");
    if (reinterpret_cast<uintptr_t>(p) % alignment != 0)
      return error(COMPACT_RT_INVALID_ARGUMENT, std::string("argument '") + name +
                                                    "' must be aligned to " +
                                                    std::to_string(alignment) + " bytes");
  }

  /// With the context's checks on (compact_rt_set_checks): the device data
  /// the call reads. Synchronises `stream`.
  void checkData(void *stream, const int32_t *ctxLens, const int32_t *pageTable = nullptr,
                 int32_t execGroupSize = 0, const int32_t *table = nullptr,
                 const int32_t *counts = nullptr) {
    if (failed() || !ctx->checks || callMode() == CallMode::LaunchValidated)
      return;
    if (callMode() == CallMode::ValidateOnly)
      table = nullptr; // the plan writes its tables between validation and launch
    status = checkDeviceData(ctx, api, *config, *shape, ctxLens, pageTable, execGroupSize, table,
                             counts, stream);
  }

  void scale(float s) {
    if (!failed() && !(std::isfinite(s)))
      error(COMPACT_RT_INVALID_ARGUMENT, "argument 'scale' must be finite (or <= 0 for "
                                         "1 / sqrt(head_dim))");
  }

  void selection(const compact_rt_selection *sel) {
    if (failed())
      return;
    if (!sel)
      return error(COMPACT_RT_INVALID_ARGUMENT, "argument 'selection' must not be NULL");
    if (!(sel->alpha > 0.0f && sel->alpha <= 1.0f))
      return error(COMPACT_RT_INVALID_ARGUMENT,
                   "selection->alpha must be in (0, 1], got " + std::to_string(sel->alpha));
    if (sel->sink < 0 || sel->window < 0)
      return error(COMPACT_RT_INVALID_ARGUMENT, "selection->sink and selection->window must "
                                                "be non-negative");
  }

  const KernelInfo *kernel(const char *op, const char *role, int64_t execGroupSize) {
    if (failed())
      return nullptr;
    const KernelInfo *k = findKernel(configKey(*config), execGroupSize, op, role);
    if (!k)
      error(COMPACT_RT_UNSUPPORTED, "the kernel library has no " + std::string(op) +
                                        " kernel for " + configKey(*config) +
                                        (execGroupSize ? " with exec_group_size " +
                                                             std::to_string(execGroupSize)
                                                       : std::string()) +
                                        "; it holds " + libraryContents() +
                                        " (more: compact-codegen --config)");
    return k;
  }

  /// Launches `k` with `grid` on `stream`, in clusters of `cluster` blocks
  /// along x when the kernel allows them and grid x is a multiple.
  void launch(const KernelInfo *k, std::array<int64_t, 3> grid, const Bindings &bindings,
              void *stream, int64_t cluster = 1) {
    if (failed() || !k)
      return;
    for (int64_t g : grid)
      if (g <= 0)
        return; // nothing to do
    int64_t kb = shape->block_capacity;
    int64_t shared = k->shared[0] + k->shared[1] * kb + k->shared[2] * ceilDiv(kb, 32);
    if (shared > ctx->maxSharedOptIn)
      return error(COMPACT_RT_INVALID_ARGUMENT,
                   std::string(k->name) + " needs " + std::to_string(shared) +
                       " bytes of shared memory for shape->block_capacity " +
                       std::to_string(kb) + "; the device allows " +
                       std::to_string(ctx->maxSharedOptIn));
    if (callMode() == CallMode::ValidateOnly)
      return;
    if (cluster > k->clusterBlocks || grid[0] % cluster != 0)
      cluster = 1;
    if (ctx->dryRun)
      return record(k, grid, bindings, shared, cluster);
    const Driver &d = *ctx->driver;
    ScopedContext scope(ctx);
    if (!scope.ok)
      return error(COMPACT_RT_CUDA_ERROR, "cannot make the device's primary context current");
    CUfunction function;
    {
      std::lock_guard<std::mutex> lock(ctx->mutex);
      auto it = ctx->functions.find(k->name);
      if (it == ctx->functions.end()) {
        CUresult r = d.cuModuleGetFunction(&function, ctx->module, k->name);
        if (r != CUDA_SUCCESS)
          return error(COMPACT_RT_CUDA_ERROR,
                       std::string("cuModuleGetFunction(") + k->name + "): " + d.describe(r));
        it = ctx->functions.emplace(k->name, function).first;
      }
      function = it->second;
    }
    if (shared > 48 * 1024) {
      std::lock_guard<std::mutex> lock(ctx->mutex);
      int &limit = ctx->sharedLimit[function];
      if (limit < shared) {
        CUresult r = d.cuFuncSetAttribute(function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                          int(shared));
        if (r != CUDA_SUCCESS)
          return error(COMPACT_RT_CUDA_ERROR,
                       std::string("cuFuncSetAttribute(") + k->name + "): " + d.describe(r));
        limit = int(shared);
      }
    }
    // MLIR's calling convention: a memref is (allocated, aligned, offset,
    // sizes..., strides...), each 8 bytes; index is i64; f32 is 4 bytes.
    std::vector<uint64_t> slots;
    slots.reserve(256);
    std::vector<size_t> starts;
    for (size_t i = 0; i < k->numArgs; ++i) {
      const KernelArg &a = k->args[i];
      starts.push_back(slots.size());
      switch (a.kind) {
      case ArgKind::Memref: {
        auto it = bindings.buffers.find(a.name);
        if (it == bindings.buffers.end() || int(it->second.shape.size()) != a.rank)
          return error(COMPACT_RT_INVALID_ARGUMENT,
                       std::string("internal: no rank-") + std::to_string(a.rank) + " buffer '" +
                           a.name + "' for " + k->name);
        auto address = uint64_t(reinterpret_cast<uintptr_t>(it->second.pointer));
        slots.push_back(address);
        slots.push_back(address);
        slots.push_back(0);
        const std::vector<int64_t> &dims = it->second.shape;
        for (int64_t dim : dims)
          slots.push_back(uint64_t(dim));
        std::vector<int64_t> strides(dims.size());
        int64_t stride = 1;
        for (size_t j = dims.size(); j-- > 0;) {
          strides[j] = stride;
          stride *= dims[j];
        }
        for (int64_t s : strides)
          slots.push_back(uint64_t(s));
        break;
      }
      case ArgKind::Index: {
        auto it = bindings.indices.find(a.name);
        if (it == bindings.indices.end())
          return error(COMPACT_RT_INVALID_ARGUMENT,
                       std::string("internal: no index '") + a.name + "' for " + k->name);
        slots.push_back(uint64_t(it->second));
        break;
      }
      case ArgKind::TensorMap: {
        auto it = bindings.buffers.find(a.of);
        if (it == bindings.buffers.end() || int(it->second.shape.size()) != a.rank)
          return error(COMPACT_RT_INVALID_ARGUMENT,
                       std::string("internal: no rank-") + std::to_string(a.rank) + " buffer '" +
                           a.of + "' for the tensor map " + a.name + " of " + k->name);
        std::string why;
        CUdeviceptr map =
            tensorMapFor(ctx, it->second.pointer, it->second.shape, a.box, config->dtype, why);
        if (!map)
          return error(COMPACT_RT_CUDA_ERROR, std::string("the tensor map of '") + a.of +
                                                  "' for " + k->name + ": " + why);
        slots.push_back(uint64_t(map));
        break;
      }
      case ArgKind::F32: {
        auto it = bindings.floats.find(a.name);
        if (it == bindings.floats.end())
          return error(COMPACT_RT_INVALID_ARGUMENT,
                       std::string("internal: no f32 '") + a.name + "' for " + k->name);
        uint64_t slot = 0;
        std::memcpy(&slot, &it->second, 4);
        slots.push_back(slot);
        break;
      }
      }
    }
    std::vector<void *> params;
    params.reserve(slots.size());
    for (uint64_t &slot : slots)
      params.push_back(&slot);
    CUlaunchAttribute clusterDim{};
    clusterDim.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    clusterDim.value.clusterDim = {unsigned(cluster), 1, 1};
    CUlaunchConfig launchConfig{unsigned(grid[0]),      unsigned(grid[1]),
                                unsigned(grid[2]),      unsigned(k->block[0]),
                                unsigned(k->block[1]),  unsigned(k->block[2]),
                                unsigned(shared),       static_cast<CUstream>(stream),
                                &clusterDim,            cluster > 1 ? 1u : 0u};
    CUresult r = d.cuLaunchKernelEx(&launchConfig, function, params.data(), nullptr);
    if (r != CUDA_SUCCESS)
      error(COMPACT_RT_CUDA_ERROR, std::string("launching ") + k->name + ": " + d.describe(r));
  }

  /// Dry run: check the bindings as a launch would, then log the launch.
  void record(const KernelInfo *k, std::array<int64_t, 3> grid, const Bindings &bindings,
              int64_t shared, int64_t cluster) {
    for (size_t i = 0; i < k->numArgs; ++i) {
      const KernelArg &a = k->args[i];
      const char *buffer = a.kind == ArgKind::TensorMap ? a.of : a.name;
      bool bound = a.kind == ArgKind::Memref || a.kind == ArgKind::TensorMap
                       ? bindings.buffers.count(buffer) &&
                             int(bindings.buffers.at(buffer).shape.size()) == a.rank
                   : a.kind == ArgKind::Index ? bindings.indices.count(a.name) > 0
                                              : bindings.floats.count(a.name) > 0;
      if (!bound)
        return error(COMPACT_RT_INVALID_ARGUMENT,
                     std::string("internal: argument '") + a.name + "' of " + k->name +
                         " is not bound");
    }
    std::lock_guard<std::mutex> lock(ctx->mutex);
    ctx->launchLog += std::string(k->name) + " grid=[" + std::to_string(grid[0]) + "," +
                      std::to_string(grid[1]) + "," + std::to_string(grid[2]) + "] block=[" +
                      std::to_string(k->block[0]) + "," + std::to_string(k->block[1]) + "," +
                      std::to_string(k->block[2]) + "] shared=" + std::to_string(shared) +
                      (cluster > 1 ? " cluster=[" + std::to_string(cluster) + ",1,1]" : "") + "\n";
  }

  // Shapes of the buffers.
  int64_t B() const { return shape->batch; }
  int64_t C() const { return shape->chunk_len; }
  int64_t Qb() const { return ceilDiv(shape->chunk_len, config->block_size); }
  int64_t Kb() const { return shape->block_capacity; }
  std::vector<int64_t> queries() const { return {B(), C(), config->q_heads, config->head_dim}; }
  std::vector<int64_t> newKV() const { return {B(), C(), config->kv_heads, config->head_dim}; }
  std::vector<int64_t> cache() const {
    if (config->layout == COMPACT_RT_NHD)
      return {shape->num_pages, config->page_size, config->kv_heads, config->head_dim};
    return {shape->num_pages, config->kv_heads, config->page_size, config->head_dim};
  }
  std::vector<int64_t> pageTable() const { return {B(), shape->max_pages_per_seq}; }
  std::vector<int64_t> lens() const { return {B()}; }
  std::vector<int64_t> pooled() const { return {B(), config->kv_heads, Kb(), config->head_dim}; }
  std::vector<int64_t> rows() const { return {B(), config->q_heads, Qb(), Kb()}; }
  int64_t tableRows(int64_t s) const { return compact::rt::tableRows(*config, *shape, s); }
  std::vector<int64_t> table(int64_t s) const { return {B(), tableRows(s), Kb()}; }
  std::vector<int64_t> counts(int64_t s) const { return {B(), tableRows(s)}; }

  float effectiveScale(float s) const {
    return s > 0.0f ? s : 1.0f / std::sqrt(float(config->head_dim));
  }

  compact_rt_context *ctx;
  const char *api;
  const compact_rt_config *config;
  const compact_rt_shape *shape;
};

void bindSelection(Bindings &b, const compact_rt_selection *sel) {
  // The kernels take ln(alpha) (rowmax_log mode), computed in fp32 as the
  // reference does.
  b.floats["threshold"] = std::log(sel->alpha);
  b.indices["sink"] = sel->sink;
  b.indices["window"] = sel->window;
}

} // namespace

CallMode &compact::rt::callMode() { return currentCallMode; }

int compact::rt::setError(int status, std::string message) {
  return fail(compact_rt_status(status), std::move(message));
}

CUdeviceptr compact::rt::allocate(compact_rt_context *ctx, size_t bytes, const char *what) {
  if (ctx->dryRun) {
    std::lock_guard<std::mutex> lock(ctx->mutex);
    CUdeviceptr p = nextFakeAddress;
    nextFakeAddress += (bytes + 255) / 256 * 256 + 256;
    return p;
  }
  ScopedContext scope(ctx);
  CUdeviceptr p = 0;
  CUresult r = ctx->driver->cuMemAlloc(&p, bytes);
  if (r != CUDA_SUCCESS) {
    fail(COMPACT_RT_CUDA_ERROR, std::string("allocating ") + what + " (" + std::to_string(bytes) +
                                    " bytes): " + ctx->driver->describe(r));
    return 0;
  }
  return p;
}

void compact::rt::release(compact_rt_context *ctx, CUdeviceptr pointer) {
  if (ctx->dryRun || !pointer)
    return;
  ScopedContext scope(ctx);
  ctx->driver->cuMemFree(pointer);
}

//===----------------------------------------------------------------------===//
// Context
//===----------------------------------------------------------------------===//

namespace {
/// The attention kernel a path names; empty if none.
std::string attentionOpFor(const char *path) {
  if (path && std::strcmp(path, "wgmma") == 0)
    return "paged_attention";
  if (path && std::strcmp(path, "mma_sync") == 0)
    return "paged_attention_mma";
  return "";
}

/// The compact_rt_clusters a name says; -1 if none.
int clustersFor(const char *name) {
  if (std::strcmp(name, "auto") == 0)
    return COMPACT_RT_CLUSTERS_AUTO;
  if (std::strcmp(name, "never") == 0)
    return COMPACT_RT_CLUSTERS_NEVER;
  if (std::strcmp(name, "always") == 0)
    return COMPACT_RT_CLUSTERS_ALWAYS;
  return -1;
}

/// COMPACT_RT_MATRIX_PATH, COMPACT_RT_KV_SPLITS, COMPACT_RT_CLUSTERS and
/// COMPACT_RT_CHECKS set a new context's defaults.
void applyEnvironment(compact_rt_context *ctx) {
  if (const char *env = std::getenv("COMPACT_RT_MATRIX_PATH")) {
    std::string op = attentionOpFor(env);
    if (!op.empty())
      ctx->attentionOp = op;
  }
  if (const char *env = std::getenv("COMPACT_RT_KV_SPLITS")) {
    int splits = std::atoi(env);
    if (splits >= 0 && splits <= kMaxKVSplits)
      ctx->kvSplits = splits;
  }
  if (const char *env = std::getenv("COMPACT_RT_CLUSTERS")) {
    int clusters = clustersFor(env);
    if (clusters >= 0)
      ctx->clusters = clusters;
  }
  if (const char *env = std::getenv("COMPACT_RT_CHECKS"))
    ctx->checks = std::strcmp(env, "") != 0 && std::strcmp(env, "0") != 0;
}
} // namespace


extern "C" const char *compact_rt_last_error(void) { return lastError.c_str(); }

extern "C" compact_rt_status compact_rt_create(int device, compact_rt_context **out) {
  if (!out)
    return fail(COMPACT_RT_INVALID_ARGUMENT, "compact_rt_create: argument 'out' must not be NULL");
  *out = nullptr;
  std::string why;
  const Driver *d = Driver::get(why);
  if (!d)
    return fail(COMPACT_RT_NO_DRIVER, "compact_rt_create: " + why);
  int count = 0;
  CUresult r = d->cuDeviceGetCount(&count);
  if (r != CUDA_SUCCESS)
    return fail(COMPACT_RT_CUDA_ERROR, "compact_rt_create: cuDeviceGetCount: " + d->describe(r));
  if (device < 0 || device >= count)
    return fail(COMPACT_RT_INVALID_ARGUMENT, "compact_rt_create: argument 'device' (" +
                                                 std::to_string(device) + ") must be in [0, " +
                                                 std::to_string(count) + ")");
  auto ctx = new compact_rt_context;
  ctx->driver = d;
  auto cleanup = [&](compact_rt_status s, const std::string &message) {
    if (ctx->primary)
      d->cuDevicePrimaryCtxRelease(ctx->device);
    delete ctx;
    return fail(s, "compact_rt_create: " + message);
  };
  if ((r = d->cuDeviceGet(&ctx->device, device)) != CUDA_SUCCESS)
    return cleanup(COMPACT_RT_CUDA_ERROR, "cuDeviceGet: " + d->describe(r));
  int major = 0, minor = 0;
  d->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, ctx->device);
  d->cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, ctx->device);
  if (major != 9 || minor != 0)
    return cleanup(COMPACT_RT_UNSUPPORTED,
                   "the kernel library is built for sm_90a (Hopper), device " +
                       std::to_string(device) + " is sm_" + std::to_string(major) +
                       std::to_string(minor));
  d->cuDeviceGetAttribute(&ctx->multiprocessors, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                          ctx->device);
  d->cuDeviceGetAttribute(&ctx->maxSharedOptIn,
                          CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, ctx->device);
  if ((r = d->cuDevicePrimaryCtxRetain(&ctx->primary, ctx->device)) != CUDA_SUCCESS)
    return cleanup(COMPACT_RT_CUDA_ERROR, "cuDevicePrimaryCtxRetain: " + d->describe(r));
  ScopedContext scope(ctx);
  if (!scope.ok)
    return cleanup(COMPACT_RT_CUDA_ERROR, "cannot make the primary context current");
  const KernelImage &image = kernelImage();
  if ((r = d->cuModuleLoadData(&ctx->module, image.data)) != CUDA_SUCCESS)
    return cleanup(COMPACT_RT_CUDA_ERROR,
                   std::string("loading the kernel library (") +
                       (image.format == ImageFormat::Cubin ? "cubin" : "PTX") +
                       "): " + d->describe(r));
  applyEnvironment(ctx);
  *out = ctx;
  return COMPACT_RT_OK;
}

extern "C" compact_rt_status compact_rt_create_dry_run(compact_rt_context **out) {
  if (!out)
    return fail(COMPACT_RT_INVALID_ARGUMENT,
                "compact_rt_create_dry_run: argument 'out' must not be NULL");
  auto ctx = new compact_rt_context;
  ctx->dryRun = true;
  ctx->maxSharedOptIn = 227 * 1024; // sm_90
  applyEnvironment(ctx);
  *out = ctx;
  return COMPACT_RT_OK;
}

extern "C" const char *compact_rt_dry_run_log(const compact_rt_context *ctx) {
  return ctx ? ctx->launchLog.c_str() : "";
}

extern "C" void compact_rt_destroy(compact_rt_context *ctx) {
  if (!ctx)
    return;
  if (ctx->dryRun) {
    delete ctx;
    return;
  }
  {
    ScopedContext scope(ctx);
    for (auto &entry : ctx->scratch)
      if (entry.second.pointer)
        ctx->driver->cuMemFree(entry.second.pointer);
    for (auto &entry : ctx->tensorMaps)
      ctx->driver->cuMemFree(entry.second);
    if (ctx->module)
      ctx->driver->cuModuleUnload(ctx->module);
  }
  ctx->driver->cuDevicePrimaryCtxRelease(ctx->device);
  delete ctx;
}

extern "C" compact_rt_status compact_rt_set_matrix_path(compact_rt_context *ctx, const char *path) {
  if (!ctx)
    return fail(COMPACT_RT_INVALID_ARGUMENT,
                "compact_rt_set_matrix_path: argument 'ctx' must not be NULL");
  std::string op = attentionOpFor(path);
  if (op.empty())
    return fail(COMPACT_RT_INVALID_ARGUMENT,
                std::string("compact_rt_set_matrix_path: argument 'path' must be \"wgmma\" or "
                            "\"mma_sync\", got ") +
                    (path ? "\"" + std::string(path) + "\"" : std::string("NULL")));
  ctx->attentionOp = op;
  return COMPACT_RT_OK;
}

extern "C" compact_rt_status compact_rt_set_kv_splits(compact_rt_context *ctx, int32_t splits) {
  if (!ctx)
    return fail(COMPACT_RT_INVALID_ARGUMENT,
                "compact_rt_set_kv_splits: argument 'ctx' must not be NULL");
  if (splits < 0 || splits > kMaxKVSplits)
    return fail(COMPACT_RT_INVALID_ARGUMENT,
                "compact_rt_set_kv_splits: argument 'splits' must be in [0, " +
                    std::to_string(kMaxKVSplits) + "] (0: chosen from the work), got " +
                    std::to_string(splits));
  ctx->kvSplits = splits;
  return COMPACT_RT_OK;
}

extern "C" compact_rt_status compact_rt_set_clusters(compact_rt_context *ctx, int32_t clusters) {
  if (!ctx)
    return fail(COMPACT_RT_INVALID_ARGUMENT,
                "compact_rt_set_clusters: argument 'ctx' must not be NULL");
  if (clusters < COMPACT_RT_CLUSTERS_AUTO || clusters > COMPACT_RT_CLUSTERS_ALWAYS)
    return fail(COMPACT_RT_INVALID_ARGUMENT,
                "compact_rt_set_clusters: argument 'clusters' must be COMPACT_RT_CLUSTERS_AUTO "
                "(0), _NEVER (1) or _ALWAYS (2), got " +
                    std::to_string(clusters));
  ctx->clusters = clusters;
  return COMPACT_RT_OK;
}

extern "C" compact_rt_status compact_rt_set_checks(compact_rt_context *ctx, int enabled) {
  if (!ctx)
    return fail(COMPACT_RT_INVALID_ARGUMENT,
                "compact_rt_set_checks: argument 'ctx' must not be NULL");
  ctx->checks = enabled != 0;
  return COMPACT_RT_OK;
}

extern "C" int compact_rt_supports(const compact_rt_context *ctx, const compact_rt_config *config,
                                   int32_t exec_group_size) {
  if (!ctx || !config)
    return 0;
  return findKernel(configKey(*config), exec_group_size, "paged_attention", "attention") !=
         nullptr;
}

//===----------------------------------------------------------------------===//
// Ops
//===----------------------------------------------------------------------===//

extern "C" compact_rt_status compact_rt_append_kv(compact_rt_context *ctx,
                                                  const compact_rt_config *config,
                                                  const compact_rt_shape *shape, const void *k_new,
                                                  const void *v_new, const int32_t *page_table,
                                                  const int32_t *ctx_lens, void *k_cache,
                                                  void *v_cache, void *stream) {
  Call call(ctx, "compact_rt_append_kv", config, shape);
  call.checkBasics();
  call.pointer(k_new, "k_new", 16);
  call.pointer(v_new, "v_new", 16);
  call.pointer(page_table, "page_table", 4);
  call.pointer(ctx_lens, "ctx_lens", 4);
  call.pointer(k_cache, "k_cache", 16);
  call.pointer(v_cache, "v_cache", 16);
  if (!call.failed() && k_cache == v_cache)
    call.error(COMPACT_RT_INVALID_ARGUMENT, "arguments 'k_cache' and 'v_cache' must differ");
  const KernelInfo *k = call.kernel("append_kv", "append", 0);
  call.checkData(stream, ctx_lens, page_table);
  if (call.failed())
    return call.status;
  Bindings b;
  b.buffers = {{"k_new", {k_new, call.newKV()}},     {"v_new", {v_new, call.newKV()}},
               {"page_table", {page_table, call.pageTable()}}, {"ctx_lens", {ctx_lens, call.lens()}},
               {"k_cache", {k_cache, call.cache()}}, {"v_cache", {v_cache, call.cache()}}};
  int64_t work = call.C() * config->kv_heads * (config->head_dim / 8);
  call.launch(k, {ceilDiv(work, 256), call.B(), 1}, b, stream);
  return call.status;
}

extern "C" compact_rt_status compact_rt_pool_keys(compact_rt_context *ctx,
                                                  const compact_rt_config *config,
                                                  const compact_rt_shape *shape,
                                                  const void *k_cache, const int32_t *page_table,
                                                  const int32_t *ctx_lens, void *pooled,
                                                  void *stream) {
  Call call(ctx, "compact_rt_pool_keys", config, shape);
  call.checkBasics();
  call.pointer(k_cache, "k_cache", 16);
  call.pointer(page_table, "page_table", 4);
  call.pointer(ctx_lens, "ctx_lens", 4);
  call.pointer(pooled, "pooled", 16);
  const KernelInfo *k = call.kernel("pool_keys", "pool", 0);
  call.checkData(stream, ctx_lens, page_table);
  if (call.failed())
    return call.status;
  Bindings b;
  b.buffers = {{"k_cache", {k_cache, call.cache()}},
               {"page_table", {page_table, call.pageTable()}},
               {"ctx_lens", {ctx_lens, call.lens()}},
               {"pooled", {pooled, call.pooled()}}};
  b.indices["chunk_len"] = call.C();
  call.launch(k, {ceilDiv(call.C(), config->block_size) + 1, config->kv_heads, call.B()}, b,
              stream);
  return call.status;
}

extern "C" compact_rt_status compact_rt_block_scores(compact_rt_context *ctx,
                                                     const compact_rt_config *config,
                                                     const compact_rt_shape *shape, const void *q,
                                                     const void *pooled, const int32_t *ctx_lens,
                                                     float scale, float *scores, void *stream) {
  Call call(ctx, "compact_rt_block_scores", config, shape);
  call.checkBasics();
  call.pointer(q, "q", 16);
  call.pointer(pooled, "pooled", 16);
  call.pointer(ctx_lens, "ctx_lens", 4);
  call.pointer(scores, "scores", 4);
  call.scale(scale);
  const KernelInfo *k = call.kernel("block_scores", "scores", 0);
  call.checkData(stream, ctx_lens);
  if (call.failed())
    return call.status;
  Bindings b;
  b.buffers = {{"q", {q, call.queries()}},
               {"pooled", {pooled, call.pooled()}},
               {"ctx_lens", {ctx_lens, call.lens()}},
               {"scores", {scores, call.rows()}}};
  b.floats["scale"] = call.effectiveScale(scale);
  call.launch(k, {call.Qb(), config->q_heads, call.B()}, b, stream);
  return call.status;
}

extern "C" compact_rt_status compact_rt_select_blocks(compact_rt_context *ctx,
                                                      const compact_rt_config *config,
                                                      const compact_rt_shape *shape,
                                                      const float *scores, const int32_t *ctx_lens,
                                                      const compact_rt_selection *selection,
                                                      int8_t *mask, void *stream) {
  Call call(ctx, "compact_rt_select_blocks", config, shape);
  call.checkBasics();
  call.pointer(scores, "scores", 4);
  call.pointer(ctx_lens, "ctx_lens", 4);
  call.pointer(mask, "mask", 1);
  call.selection(selection);
  const KernelInfo *k = call.kernel("select_blocks", "select", 0);
  call.checkData(stream, ctx_lens);
  if (call.failed())
    return call.status;
  Bindings b;
  b.buffers = {{"scores", {scores, call.rows()}},
               {"ctx_lens", {ctx_lens, call.lens()}},
               {"mask", {mask, call.rows()}}};
  b.indices["chunk_len"] = call.C();
  bindSelection(b, selection);
  call.launch(k, {call.Qb(), config->q_heads, call.B()}, b, stream);
  return call.status;
}

extern "C" compact_rt_status compact_rt_block_union(compact_rt_context *ctx,
                                                    const compact_rt_config *config,
                                                    const compact_rt_shape *shape,
                                                    int32_t exec_group_size, const int8_t *mask,
                                                    const int32_t *ctx_lens, int32_t *table,
                                                    int32_t *counts, void *stream) {
  Call call(ctx, "compact_rt_block_union", config, shape);
  call.checkBasics(exec_group_size);
  call.pointer(mask, "mask", 1);
  Bindings b;
  call.tableArgs(b, ctx_lens, table, counts, exec_group_size);
  const KernelInfo *k = call.kernel("block_union", "union", exec_group_size);
  call.checkData(stream, ctx_lens);
  if (call.failed())
    return call.status;
  b.buffers["mask"] = {mask, call.rows()};
  b.indices["chunk_len"] = call.C();
  call.launch(k, {call.tableRows(exec_group_size), call.B(), 1}, b, stream);
  return call.status;
}

namespace {
/// Scratch sizes are kept 256-byte aligned (the kernels' vector accesses).
size_t alignScratch(size_t bytes) { return (bytes + 255) / 256 * 256; }

/// At least `bytes` of the scratch of `stream` (0 bytes: none); grown by
/// reallocation (cuMemFree waits for the work that may still use it).
compact_rt_status scratchFor(compact_rt_context *ctx, void *stream, size_t bytes,
                             CUdeviceptr *out) {
  *out = 0;
  if (bytes == 0)
    return COMPACT_RT_OK;
  if (ctx->dryRun) {
    *out = CUdeviceptr(1) << 40; // never dereferenced
    return COMPACT_RT_OK;
  }
  std::lock_guard<std::mutex> lock(ctx->mutex);
  compact_rt_context::Scratch &scratch = ctx->scratch[stream];
  if (scratch.bytes < bytes) {
    release(ctx, scratch.pointer);
    scratch = {};
    CUdeviceptr p = allocate(ctx, bytes, "compact_rt_paged_attention's scratch");
    if (!p)
      return COMPACT_RT_CUDA_ERROR; // allocate() recorded why
    scratch = {p, bytes};
  }
  *out = scratch.pointer;
  return COMPACT_RT_OK;
}

/// clear -> threshold (`select`) -> table, shared by the two fused unions.
compact_rt_status fusedUnion(Call &call, const char *op, int32_t s, Bindings &b, void *stream,
                             std::array<int64_t, 3> selectGrid) {
  const KernelInfo *clear = call.kernel(op, "clear", s);
  const KernelInfo *select = call.kernel(op, "select", s);
  const KernelInfo *table = call.kernel(op, "table", s);
  if (call.failed())
    return call.status;
  int64_t rows = call.tableRows(s);
  call.launch(clear, {rows, call.B(), 1}, b, stream);
  call.launch(select, selectGrid, b, stream);
  call.launch(table, {rows, call.B(), 1}, b, stream);
  return call.status;
}
} // namespace

extern "C" compact_rt_status compact_rt_select_union(compact_rt_context *ctx,
                                                     const compact_rt_config *config,
                                                     const compact_rt_shape *shape,
                                                     int32_t exec_group_size, const float *scores,
                                                     const int32_t *ctx_lens,
                                                     const compact_rt_selection *selection,
                                                     int32_t *table, int32_t *counts,
                                                     void *stream) {
  Call call(ctx, "compact_rt_select_union", config, shape);
  call.checkBasics(exec_group_size);
  call.pointer(scores, "scores", 4);
  Bindings b;
  call.tableArgs(b, ctx_lens, table, counts, exec_group_size);
  call.selection(selection);
  call.checkData(stream, ctx_lens);
  if (call.failed())
    return call.status;
  b.buffers["scores"] = {scores, call.rows()};
  b.indices["chunk_len"] = call.C();
  bindSelection(b, selection);
  return fusedUnion(call, "select_union", exec_group_size, b, stream,
                    {call.Qb(), config->q_heads, call.B()});
}

extern "C" compact_rt_status compact_rt_score_select_union(
    compact_rt_context *ctx, const compact_rt_config *config, const compact_rt_shape *shape,
    int32_t exec_group_size, const void *q, const void *pooled, const int32_t *ctx_lens,
    float scale, const compact_rt_selection *selection, int32_t *table, int32_t *counts,
    void *stream) {
  Call call(ctx, "compact_rt_score_select_union", config, shape);
  call.checkBasics(exec_group_size);
  call.pointer(q, "q", 16);
  call.pointer(pooled, "pooled", 16);
  Bindings b;
  call.tableArgs(b, ctx_lens, table, counts, exec_group_size);
  call.scale(scale);
  call.selection(selection);
  call.checkData(stream, ctx_lens);
  if (call.failed())
    return call.status;
  b.buffers["q"] = {q, call.queries()};
  b.buffers["pooled"] = {pooled, call.pooled()};
  b.indices["chunk_len"] = call.C();
  b.floats["scale"] = call.effectiveScale(scale);
  bindSelection(b, selection);
  return fusedUnion(call, "score_select_union", exec_group_size, b, stream,
                    {call.Qb(), config->q_heads, call.B()});
}

extern "C" compact_rt_status compact_rt_choose_exec_groups(compact_rt_context *ctx,
                                                           const compact_rt_config *config,
                                                           const compact_rt_shape *shape,
                                                           float slack, int32_t *table,
                                                           int32_t *counts, void *stream) {
  Call call(ctx, "compact_rt_choose_exec_groups", config, shape);
  call.checkBasics();
  call.pointer(table, "table", 4);
  call.pointer(counts, "counts", 4);
  if (std::string wrong = checkSlack("argument 'slack'", slack); !call.failed() && !wrong.empty())
    call.error(COMPACT_RT_INVALID_ARGUMENT, wrong);
  const KernelInfo *k = call.kernel("choose_exec_groups", "choose", 0);
  if (call.failed())
    return call.status;
  Bindings b;
  b.buffers["table"] = {table, call.table(1)};
  b.buffers["counts"] = {counts, call.counts(1)};
  b.floats["slack"] = slack;
  call.launch(k, {call.tableRows(1) / (config->q_heads / config->kv_heads), call.B(), 1}, b,
              stream);
  return call.status;
}

extern "C" compact_rt_status compact_rt_dense_table(compact_rt_context *ctx,
                                                    const compact_rt_config *config,
                                                    const compact_rt_shape *shape,
                                                    int32_t exec_group_size,
                                                    const int32_t *ctx_lens, int32_t *table,
                                                    int32_t *counts, void *stream) {
  Call call(ctx, "compact_rt_dense_table", config, shape);
  call.checkBasics(exec_group_size);
  Bindings b;
  call.tableArgs(b, ctx_lens, table, counts, exec_group_size);
  const KernelInfo *k = call.kernel("dense_table", "dense", exec_group_size);
  call.checkData(stream, ctx_lens);
  if (call.failed())
    return call.status;
  call.launch(k, {call.tableRows(exec_group_size), call.B(), 1}, b, stream);
  return call.status;
}

extern "C" compact_rt_status compact_rt_paged_attention(
    compact_rt_context *ctx, const compact_rt_config *config, const compact_rt_shape *shape,
    int32_t exec_group_size, const void *q, const void *k_cache, const void *v_cache,
    const int32_t *page_table, const int32_t *ctx_lens, const int32_t *table,
    const int32_t *counts, float scale, void *out, float *lse, void *stream) {
  Call call(ctx, "compact_rt_paged_attention", config, shape);
  call.checkBasics(exec_group_size);
  call.pointer(q, "q", 16);
  call.pointer(k_cache, "k_cache", 16);
  call.pointer(v_cache, "v_cache", 16);
  call.pointer(page_table, "page_table", 4);
  Bindings b;
  call.tableArgs(b, ctx_lens, table, counts, exec_group_size, "block_table", "block_counts");
  call.pointer(out, "out", 16);
  if (lse)
    call.pointer(lse, "lse", 4);
  call.scale(scale);
  if (!call.failed() && (out == q || out == k_cache || out == v_cache))
    call.error(COMPACT_RT_INVALID_ARGUMENT, "argument 'out' must not alias 'q' or the cache");
  // A row tile of the kernel (128 packed rows = 128 / s tokens) must lie in
  // one query block to read one table row.
  if (!call.failed() && shape->per_query_block &&
      (int64_t(config->block_size) * exec_group_size) % 128 != 0)
    call.error(COMPACT_RT_UNSUPPORTED,
               "shape->per_query_block needs config->block_size * exec_group_size (" +
                   std::to_string(config->block_size) + " * " +
                   std::to_string(exec_group_size) +
                   ") to be a multiple of 128, the attention kernel's row tile");
  const KernelInfo *k = call.kernel(ctx->attentionOp.c_str(), "attention", exec_group_size);
  call.checkData(stream, ctx_lens, page_table, exec_group_size, table, counts);
  if (call.failed())
    return call.status;
  // Split-KV when the grid would leave SMs idle (wgmma path): the split
  // kernel writes partial results to the workspace, the combine kernel
  // merges them into out / lse.
  // The kernel's grid: 128 packed rows (C * s of them) per block, E groups.
  const int64_t rowTiles = ceilDiv(call.C() * exec_group_size, 128);
  const int64_t groups = config->q_heads / exec_group_size;
  int64_t splits = ctx->kvSplits > 0 ? ctx->kvSplits
                                     : kvSplitsFor(rowTiles * groups * call.B(),
                                                   ctx->multiprocessors, shape->block_capacity);
  const KernelInfo *splitKernel = nullptr, *combine = nullptr;
  if (splits > 1 && ctx->attentionOp == "paged_attention") {
    splitKernel = call.kernel("paged_attention_split", "attention", exec_group_size);
    combine = call.kernel("paged_attention_split", "combine", exec_group_size);
  } else {
    splits = 1;
  }
  if (call.failed())
    return call.status;
  // Scratch of this stream: the lse when the caller does not want it (the
  // kernels always write it), then the workspace.
  const size_t lseBytes = lse ? 0 : alignScratch(size_t(call.B()) * config->q_heads * call.C() * 4);
  const size_t partialLseBytes =
      splits > 1 ? alignScratch(size_t(splits) * call.B() * config->q_heads * call.C() * 4) : 0;
  const size_t partialOutBytes =
      splits > 1 ? size_t(splits) * call.B() * call.C() * config->q_heads * config->head_dim * 4
                 : 0;
  CUdeviceptr scratch = 0;
  if (compact_rt_status s = scratchFor(ctx, stream, lseBytes + partialLseBytes + partialOutBytes,
                                       &scratch))
    return s;
  if (!lse)
    lse = reinterpret_cast<float *>(scratch);
  b.buffers.insert({{"q", {q, call.queries()}},
                   {"k_cache", {k_cache, call.cache()}},
                   {"v_cache", {v_cache, call.cache()}},
                   {"page_table", {page_table, call.pageTable()}},
                   {"out", {out, call.queries()}},
                   {"lse", {lse, {call.B(), config->q_heads, call.C()}}}});
  b.floats["scale"] = call.effectiveScale(scale);
  if (splits == 1) {
    // Pairs of row tiles as clusters where both tiles read one table row
    // (a row tile is 128 / s tokens, a pair 256 / s).
    bool sameRow = !shape->per_query_block ||
                   (int64_t(config->block_size) * exec_group_size) % 256 == 0;
    int64_t cluster = ctx->clusters == COMPACT_RT_CLUSTERS_ALWAYS ||
                              (ctx->clusters == COMPACT_RT_CLUSTERS_AUTO && sameRow)
                          ? 2
                          : 1;
    call.launch(k, {rowTiles, groups, call.B()}, b, stream, cluster);
    return call.status;
  }
  b.buffers["partial_lse"] = {reinterpret_cast<void *>(scratch + lseBytes),
                              {splits, call.B(), config->q_heads, call.C()}};
  b.buffers["partial_out"] = {
      reinterpret_cast<void *>(scratch + lseBytes + partialLseBytes),
      {splits, call.B(), call.C(), config->q_heads, config->head_dim}};
  call.launch(splitKernel, {rowTiles, groups, call.B() * splits}, b, stream);
  call.launch(combine, {ceilDiv(call.C() * config->q_heads, 4), call.B(), 1}, b, stream);
  return call.status;
}

extern "C" compact_rt_status compact_rt_check_metadata(compact_rt_context *ctx,
                                                       const compact_rt_config *config,
                                                       const compact_rt_shape *shape,
                                                       const int32_t *page_table,
                                                       const int32_t *ctx_lens, void *stream) {
  Call call(ctx, "compact_rt_check_metadata", config, shape);
  call.checkBasics();
  call.pointer(page_table, "page_table", 4);
  call.pointer(ctx_lens, "ctx_lens", 4);
  if (call.failed())
    return call.status;
  return checkDeviceData(ctx, "compact_rt_check_metadata", *config, *shape, ctx_lens, page_table,
                         0, nullptr, nullptr, stream);
}

extern "C" compact_rt_status compact_rt_check_tables(compact_rt_context *ctx,
                                                     const compact_rt_config *config,
                                                     const compact_rt_shape *shape,
                                                     int32_t exec_group_size,
                                                     const int32_t *ctx_lens, const int32_t *table,
                                                     const int32_t *counts, void *stream) {
  Call call(ctx, "compact_rt_check_tables", config, shape);
  call.checkBasics(exec_group_size);
  Bindings unused;
  call.tableArgs(unused, ctx_lens, table, counts, exec_group_size);
  if (call.failed())
    return call.status;
  return checkDeviceData(ctx, "compact_rt_check_tables", *config, *shape, ctx_lens, nullptr,
                         exec_group_size, table, counts, stream);
}
