// RUN: compact-opt %s -split-input-file -compact-gpu-pipeline="format=isa" | FileCheck %s

// The whole GPU pipeline: the kernels become one gpu.binary holding PTX for
// sm_90a; the host side encodes the attention's four tensor maps (MLIR's
// runtime wrapper of cuTensorMapEncodeTiled) and calls the kernels through
// gpu.launch_func on LLVM.
// CHECK-LABEL: llvm.func @paged_attention
// CHECK-COUNT-4:   llvm.call @mgpuTensorMapEncodeTiledMemref
//       CHECK:   gpu.launch_func  @compact_kernels::@paged_attention_attention
//       CHECK: gpu.binary @compact_kernels
//  CHECK-SAME:   #nvvm.target<{{.*}}chip = "sm_90a"
//  CHECK-SAME:   .target sm_90a
//  CHECK-SAME:   .entry paged_attention_attention(
//  CHECK-SAME:   cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
//  CHECK-SAME:   cp.async.cg.shared.global
//  CHECK-SAME:   wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
//  CHECK-SAME:   ex2.approx.ftz.f32
//  CHECK-SAME:   wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
func.func @paged_attention(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
                           %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
                           %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                           %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>) {
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32>
        into memref<?x?x16x128xbf16>
  return
}

// -----

// The fused selection: the three kernels, the union taken with atom.or.
// CHECK-LABEL: llvm.func @score_select_union
// CHECK: gpu.binary @compact_kernels
// CHECK-SAME: .entry score_select_union_clear(
// CHECK-SAME: .entry score_select_union_select(
// CHECK-SAME: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// CHECK-SAME: atom.global.or.b32
// CHECK-SAME: .entry score_select_union_table(
// CHECK-SAME: popc.b32
func.func @score_select_union(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x128xbf16>,
                              %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                              %counts: memref<?x4xi32>) {
  compact.score_select_union %q, %pooled, %lens into %table, %counts
      {block_size = 128, exec_group_size = 4, mode = #compact.threshold<rowmax_log>,
       threshold = 0.06 : f32, sink = 2, window = 4}
      : memref<?x?x16x128xbf16>, memref<?x4x?x128xbf16>, memref<?xi32>
        into memref<?x4x?xi32>, memref<?x4xi32>
  return
}
