//===- KernelTable.h - the kernel library as the runtime sees it -*- C++ -*-===//
//
// compact-codegen writes CompactKernels.cpp, which defines kernelImage(): the
// image (cubin, or PTX the driver compiles) and one KernelInfo per kernel.
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_RUNTIME_KERNELTABLE_H
#define COMPACT_RUNTIME_KERNELTABLE_H

#include <cstddef>
#include <cstdint>

namespace compact::rt {

enum class ArgKind { Memref, Index, F32, TensorMap };
enum class ImageFormat { Cubin, Ptx };

struct KernelArg {
  const char *name;
  ArgKind kind;
  int rank; // memrefs, tensor maps
  /// TensorMap: the memref argument the map describes (a buffer of the call)
  /// and the box each copy moves, in memref order (see TensorMaps.cpp).
  const char *of = nullptr;
  int64_t box[5] = {};
};

struct KernelInfo {
  const char *name;
  const char *config; // LibraryConfig::key()
  const char *op;     // e.g. paged_attention
  const char *role;   // e.g. attention, clear, select, table
  int64_t execGroupSize; // 0 when the op does not depend on it
  int64_t block[3];
  int64_t shared[3]; // fixed, per KV block, per 32 KV blocks
  const KernelArg *args;
  size_t numArgs;
  /// Blocks along grid x that may be launched as one thread-block cluster
  /// (1: none); the kernel is correct either way.
  int64_t clusterBlocks = 1;
};

struct KernelImage {
  const unsigned char *data;
  size_t size;
  ImageFormat format;
  const KernelInfo *kernels;
  size_t numKernels;
};

const KernelImage &kernelImage();

} // namespace compact::rt

#endif // COMPACT_RUNTIME_KERNELTABLE_H
