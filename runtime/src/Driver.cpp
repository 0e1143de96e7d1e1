//===- Driver.cpp - the CUDA driver API, opened on first use --------------===//

#include "Driver.h"

#include <dlfcn.h>
#include <mutex>

using namespace compact::rt;

namespace {

template <typename Fn>
bool resolve(void *library, Fn &fn, const char *name, std::string &missing) {
  fn = reinterpret_cast<Fn>(dlsym(library, name));
  if (!fn)
    missing = name;
  return fn != nullptr;
}

} // namespace

const Driver *Driver::get(std::string &error) {
  static Driver driver;
  static std::string openError;
  static std::once_flag once;
  std::call_once(once, [] {
    void *library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!library) {
      const char *why = dlerror();
      openError = std::string("no CUDA driver: cannot open libcuda.so.1 (") +
                  (why ? why : "unknown reason") +
                  "); the GPU runtime needs an NVIDIA driver, the CPU path (compact-run) does not";
      return;
    }
    std::string missing;
    bool ok = resolve(library, driver.cuInit, "cuInit", missing) &&
              resolve(library, driver.cuDeviceGetCount, "cuDeviceGetCount", missing) &&
              resolve(library, driver.cuDeviceGet, "cuDeviceGet", missing) &&
              resolve(library, driver.cuDeviceGetAttribute, "cuDeviceGetAttribute", missing) &&
              resolve(library, driver.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain",
                      missing) &&
              resolve(library, driver.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2",
                      missing) &&
              resolve(library, driver.cuCtxPushCurrent, "cuCtxPushCurrent_v2", missing) &&
              resolve(library, driver.cuCtxPopCurrent, "cuCtxPopCurrent_v2", missing) &&
              resolve(library, driver.cuModuleLoadData, "cuModuleLoadData", missing) &&
              resolve(library, driver.cuModuleUnload, "cuModuleUnload", missing) &&
              resolve(library, driver.cuModuleGetFunction, "cuModuleGetFunction", missing) &&
              resolve(library, driver.cuFuncSetAttribute, "cuFuncSetAttribute", missing) &&
              resolve(library, driver.cuLaunchKernelEx, "cuLaunchKernelEx", missing) &&
              resolve(library, driver.cuMemAlloc, "cuMemAlloc_v2", missing) &&
              resolve(library, driver.cuMemFree, "cuMemFree_v2", missing) &&
              resolve(library, driver.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", missing) &&
              resolve(library, driver.cuMemcpyHtoD, "cuMemcpyHtoD_v2", missing) &&
              resolve(library, driver.cuTensorMapEncodeTiled, "cuTensorMapEncodeTiled",
                      missing) &&
              resolve(library, driver.cuStreamSynchronize, "cuStreamSynchronize", missing) &&
              resolve(library, driver.cuMemsetD32Async, "cuMemsetD32Async", missing) &&
              resolve(library, driver.cuGetErrorName, "cuGetErrorName", missing) &&
              resolve(library, driver.cuGetErrorString, "cuGetErrorString", missing);
    if (!ok) {
      openError = "libcuda.so.1 has no " + missing + ": the driver is too old";
      return;
    }
    CUresult init = driver.cuInit(0);
    if (init != CUDA_SUCCESS)
      openError = "cuInit failed: " + driver.describe(init);
  });
  if (!openError.empty()) {
    error = openError;
    return nullptr;
  }
  return &driver;
}

std::string Driver::describe(CUresult result) const {
  const char *name = nullptr, *text = nullptr;
  if (cuGetErrorName)
    cuGetErrorName(result, &name);
  if (cuGetErrorString)
    cuGetErrorString(result, &text);
  return std::string(name ? name : "CUDA error") + " (" + std::to_string(result) +
         "): " + (text ? text : "no description");
}
