//===- TensorMaps.cpp - the tensor maps of the kernels' TMA copies --------===//
//
// The attention kernel brings K / V tiles in with cp.async.bulk.tensor, which
// reads a CUtensorMap from global memory. The map depends only on the cache
// buffer (address, shape) and the box, so each is encoded once per context
// and kept: an engine reuses its cache buffers, and a map is never rewritten
// under a launch that may still read it.
//
//===----------------------------------------------------------------------===//

#include "Context.h"

using namespace compact::rt;

CUdeviceptr compact::rt::tensorMapFor(compact_rt_context *ctx, const void *pointer,
                                      const std::vector<int64_t> &shape, const int64_t *box,
                                      compact_rt_dtype dtype, std::string &error) {
  const size_t rank = shape.size();
  std::vector<uint64_t> key = {uint64_t(reinterpret_cast<uintptr_t>(pointer)), uint64_t(dtype)};
  for (size_t i = 0; i < rank; ++i) {
    key.push_back(uint64_t(shape[i]));
    key.push_back(uint64_t(box[i]));
  }
  std::lock_guard<std::mutex> lock(ctx->mutex);
  auto found = ctx->tensorMaps.find(key);
  if (found != ctx->tensorMaps.end())
    return found->second;

  // The driver lists dimensions innermost first, with the byte strides of
  // all but the innermost.
  const uint64_t elementBytes = 2;
  uint64_t dims[5], strides[4];
  uint32_t boxDims[5], elementStrides[5];
  uint64_t stride = elementBytes;
  for (size_t i = 0; i < rank; ++i) {
    size_t d = rank - 1 - i;
    dims[i] = uint64_t(shape[d]);
    boxDims[i] = uint32_t(box[d]);
    elementStrides[i] = 1;
    if (i > 0)
      strides[i - 1] = stride;
    stride *= uint64_t(shape[d]);
  }
  CUtensorMap map;
  const Driver &d = *ctx->driver;
  CUresult r = d.cuTensorMapEncodeTiled(
      &map, dtype == COMPACT_RT_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                     : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
      uint32_t(rank), const_cast<void *>(pointer), dims, strides, boxDims, elementStrides,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    error = "cuTensorMapEncodeTiled: " + d.describe(r);
    return 0;
  }
  CUdeviceptr device = 0;
  if ((r = d.cuMemAlloc(&device, sizeof(map))) != CUDA_SUCCESS) {
    error = "cuMemAlloc (tensor map): " + d.describe(r);
    return 0;
  }
  if ((r = d.cuMemcpyHtoD(device, &map, sizeof(map))) != CUDA_SUCCESS) {
    d.cuMemFree(device);
    error = "cuMemcpyHtoD (tensor map): " + d.describe(r);
    return 0;
  }
  ctx->tensorMaps.emplace(std::move(key), device);
  return device;
}
