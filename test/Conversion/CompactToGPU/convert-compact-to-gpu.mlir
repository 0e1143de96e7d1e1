// RUN: compact-opt %s -split-input-file -convert-compact-to-gpu -canonicalize -cse | FileCheck %s

// Paged attention, wgmma path (the default). The host side is one launch of
// 384 threads per 128 packed rows, execution group and sequence: two consumer
// warpgroups and a producer warpgroup. Shared memory: Q (32 KB), three stages
// each of K and V (6 x 32 KB) and 12 ring barriers (96 bytes). The kernel may
// run as clusters of two blocks along x: it reads its cluster's shape and its
// rank, and pairs with the other block when both row tiles read one table row
// (here always: one row per group). Thread 0 initialises the barriers (a full
// one expects the 128 producer threads' arrivals and the tile's bytes, an
// empty one the 8 consumer warps, or 16 when paired) and, clustered, fences
// the init for the cluster, which then meets (else the block). The roles
// split and trade registers (setmaxnreg). The host makes TMA tensor
// maps per cache (boxes of 64 keys x 64 elements, and of one key x 64, with
// the 128-byte swizzle) and passes them as pointers. The producer walks the
// table: per 128-key tile it waits for a free K stage, every thread arrives
// (the leader expecting 32 KB), and each 64-key part (its page looked up)
// comes in by TMA: inside the context two 64-row boxes (head halves) from the
// leader, past it the same boxes at a slot outside the page (zeros), and
// where the context ends one row box per thread; then the same for V. Each
// box is multicast to both blocks of a pair by the block whose turn it is, or
// copied alone. The consumers load Q, meet at named barrier 1, and take
// different walks, issuing their products in strict turns (named barriers 2
// and 3; warpgroup 1 hands warpgroup 0 the first turn):
// warpgroup 1 runs the softmax of the tile before first, then waits for K_j
// and V_{j-1} (no proxy fence: TMA and wgmma are both the async proxy),
// issues S_j (8
// k-steps of m64n128k16) and P_{j-1} V_{j-1} (8 k-steps, register A,
// MN-major V) and releases both stages; warpgroup 0 issues S_j and
// P_{j-1} V_{j-1} together, waits for S_j only, releases K_j, runs the
// softmax (ex2) under P V, then releases V_{j-1}. A release reaches the
// paired block's empty barrier too. At the end, clustered blocks meet again.
// CHECK-LABEL: func.func @paged_attention
//       CHECK:   %[[KU:.+]] = memref.cast %arg1 : memref<?x64x4x128xbf16> to memref<*xbf16>
//       CHECK:   %[[KD:.+]] = nvgpu.tma.create.descriptor %[[KU]] box[%c1, %c64, %c1, %c64] : memref<*xbf16> -> <tensor = memref<1x64x1x64xbf16, #gpu.address_space<workgroup>>, swizzle = swizzle_128b, l2promo = l2promo_256b, oob = zero, interleave = none>
//       CHECK:   %[[KM:.+]] = builtin.unrealized_conversion_cast %[[KD]] : {{.+}} to !llvm.ptr
//       CHECK:   %[[VU:.+]] = memref.cast %arg2
//       CHECK:   %[[VD:.+]] = nvgpu.tma.create.descriptor %[[VU]]
//       CHECK:   %[[VM:.+]] = builtin.unrealized_conversion_cast %[[VD]]
//       CHECK:   gpu.launch_func  @compact_kernels::@paged_attention_attention
//  CHECK-SAME:     threads in (%c384, %c1, %c1)  dynamic_shared_memory_size %c229472_i32
//  CHECK-SAME:     %[[KM]] : !llvm.ptr, %[[VM]] : !llvm.ptr, %{{.+}} : !llvm.ptr, %{{.+}} : !llvm.ptr)
// CHECK-LABEL: gpu.func @paged_attention_attention
//  CHECK-SAME:   compact.arg_names = ["q", "k_cache", "v_cache", "page_table", "ctx_lens", "block_table", "block_counts", "out", "scale", "k_cache_map", "v_cache_map", "k_cache_row_map", "v_cache_row_map"]
//  CHECK-SAME:   compact.cluster_blocks = 2 : i64
//  CHECK-SAME:   compact.grid = "[ceil(C * s / 128), E, B]"
//  CHECK-SAME:   compact.tensor_maps = {k_cache_map = {box = array<i64: 1, 64, 1, 64>, of = "k_cache"}, k_cache_row_map = {box = array<i64: 1, 1, 1, 64>, of = "k_cache"}, v_cache_map = {box = array<i64: 1, 64, 1, 64>, of = "v_cache"}, v_cache_row_map = {box = array<i64: 1, 1, 1, 64>, of = "v_cache"}}
//       CHECK:   %[[BLOCKS:.+]] = llvm.inline_asm {{.*}} "mov.u32 $0, %cluster_nctarank;"
//       CHECK:   %[[CLUSTERED:.+]] = arith.cmpi ugt, %{{.+}}, %c1 : index
//       CHECK:   "mov.u32 $0, %cluster_ctarank;"
//       CHECK:   "mov.u32 $0, %cluster_nctaid.x;"
//       CHECK:   %[[PAIRED:.+]] = arith.andi
//       CHECK:   arith.select %[[PAIRED]], %c16, %c8 : index
//       CHECK:   "mbarrier.init.shared::cta.b64 [$0], 128;"
//       CHECK:   "mbarrier.init.shared::cta.b64 [$0], $1;"
//       CHECK:   scf.if %[[CLUSTERED]] {
//  CHECK-NEXT:     "fence.mbarrier_init.release.cluster;"
//       CHECK:   scf.if %[[CLUSTERED]] {
//  CHECK-NEXT:     "barrier.cluster.arrive.release;\0Abarrier.cluster.wait.acquire;"
//  CHECK-NEXT:   } else {
//  CHECK-NEXT:     gpu.barrier
//       CHECK:   scf.if
// The producer.
//       CHECK:     "setmaxnreg.dec.sync.aligned.u32 40;"
//   CHECK-NOT:     nvgpu.device_async_copy
//       CHECK:     scf.for
//       CHECK:       mbarrier.try_wait.parity.shared::cta.b64
//       CHECK:       @p mbarrier.arrive.shared::cta.b64
//       CHECK:       "mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], 32768;"
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg9, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg9, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg9, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg9, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg11, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg11, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg9, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg9, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg9, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg9, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg11, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg11, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//       CHECK:       mbarrier.try_wait.parity.shared::cta.b64
//       CHECK:       "mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], 32768;"
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg10, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg10, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg10, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg10, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg12, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg12, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg10, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg10, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg10, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg10, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg12, {{.+}} multicast_mask = %c3_i16
//       CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.+}}, %arg12, %{{[0-9]+}}, box[{{[^]]+}}] : !llvm.ptr<7>
//   CHECK-NOT:     nvgpu.device_async_copy
//       CHECK:   } else {
// The consumers.
//       CHECK:     "setmaxnreg.inc.sync.aligned.u32 232;"
//       CHECK:     nvgpu.device_async_copy %arg0
//       CHECK:     nvvm.cp.async.wait.group 0
//       CHECK:     "fence.proxy.async.shared::cta;"
//       CHECK:     "bar.sync 1, 256;"
//       CHECK:     scf.if
// Both warpgroups run one walk and take turns (named barriers 2 / 3).
// Warpgroup 1 hands warpgroup 0 the first turn and keeps its last.
//       CHECK:   mbarrier.try_wait.parity.shared::cta.b64
//       CHECK:   "bar.arrive 2, 256;"
//       CHECK:   "bar.sync 3, 256;"
//   CHECK-NOT:   "fence.proxy.async.shared::cta;"
// CHECK-COUNT-8:   wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}} p, 1, 1, 0, 0;
//       CHECK:   "bar.arrive 2, 256;"
//       CHECK:   "wgmma.wait_group.sync.aligned 0;"
//       CHECK:   @p mbarrier.arrive.shared::cta.b64
//       CHECK:   @p mapa.shared::cluster.u32 remote, $0, $1;\0A@p mbarrier.arrive.shared::cluster.b64 _, [remote];
// The first tile's softmax is exact (no vote).
//   CHECK-NOT:   nvvm.vote.sync
//       CHECK:   gpu.shuffle  xor
//       CHECK:   llvm.nvvm.ex2.approx
//   CHECK-NOT:   nvvm.vote.sync
//       CHECK:   scf.for
//       CHECK:     mbarrier.try_wait.parity.shared::cta.b64
//       CHECK:     mbarrier.try_wait.parity.shared::cta.b64
//       CHECK:     "bar.sync 3, 256;"
// CHECK-COUNT-8:     wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}} p, 1, 1, 0, 0;
// CHECK-COUNT-8:     wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}} p, 1, 1, 1;
//       CHECK:     "bar.arrive 2, 256;"
//       CHECK:     "wgmma.wait_group.sync.aligned 1;"
//       CHECK:     @p mbarrier.arrive.shared::cta.b64
// Speculative softmax per row: exp2 against the maxima so far, no shuffle,
// a warp vote on the sums; the exact step (maxima, shuffles) where it fails.
//   CHECK-NOT:     gpu.shuffle
//       CHECK:     llvm.nvvm.ex2.approx
//   CHECK-NOT:     gpu.shuffle
//       CHECK:     nvvm.vote.sync  ballot
//       CHECK:     scf.if
//       CHECK:     } else {
//       CHECK:       gpu.shuffle  xor
//       CHECK:       llvm.nvvm.ex2.approx
//       CHECK:     nvvm.vote.sync  ballot
//       CHECK:     "wgmma.wait_group.sync.aligned 0;"
//       CHECK:     @p mbarrier.arrive.shared::cta.b64
//       CHECK:     scf.yield
//       CHECK:   mbarrier.try_wait.parity.shared::cta.b64
//       CHECK:   "bar.sync 3, 256;"
// CHECK-COUNT-8:   wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}} p, 1, 1, 1;
//   CHECK-NOT:   "bar.arrive
//       CHECK:   "wgmma.wait_group.sync.aligned 0;"
//       CHECK:   @p mbarrier.arrive.shared::cta.b64
//       CHECK:   } else {
// Warpgroup 0.
//       CHECK:   mbarrier.try_wait.parity.shared::cta.b64
//       CHECK:   "bar.sync 2, 256;"
//   CHECK-NOT:   "fence.proxy.async.shared::cta;"
// CHECK-COUNT-8:   wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}} p, 1, 1, 0, 0;
//       CHECK:   "bar.arrive 3, 256;"
//       CHECK:   "wgmma.wait_group.sync.aligned 0;"
//       CHECK:   @p mbarrier.arrive.shared::cta.b64
// The first tile's softmax is exact (no vote).
//   CHECK-NOT:   nvvm.vote.sync
//       CHECK:   gpu.shuffle  xor
//       CHECK:   llvm.nvvm.ex2.approx
//   CHECK-NOT:   nvvm.vote.sync
//       CHECK:   scf.for
//       CHECK:     mbarrier.try_wait.parity.shared::cta.b64
//       CHECK:     mbarrier.try_wait.parity.shared::cta.b64
//       CHECK:     "bar.sync 2, 256;"
// CHECK-COUNT-8:     wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}} p, 1, 1, 0, 0;
// CHECK-COUNT-8:     wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}} p, 1, 1, 1;
//       CHECK:     "bar.arrive 3, 256;"
//       CHECK:     "wgmma.wait_group.sync.aligned 1;"
//       CHECK:     @p mbarrier.arrive.shared::cta.b64
// Speculative softmax per row: exp2 against the maxima so far, no shuffle,
// a warp vote on the sums; the exact step (maxima, shuffles) where it fails.
//   CHECK-NOT:     gpu.shuffle
//       CHECK:     llvm.nvvm.ex2.approx
//   CHECK-NOT:     gpu.shuffle
//       CHECK:     nvvm.vote.sync  ballot
//       CHECK:     scf.if
//       CHECK:     } else {
//       CHECK:       gpu.shuffle  xor
//       CHECK:       llvm.nvvm.ex2.approx
//       CHECK:     nvvm.vote.sync  ballot
//       CHECK:     "wgmma.wait_group.sync.aligned 0;"
//       CHECK:     @p mbarrier.arrive.shared::cta.b64
//       CHECK:     scf.yield
//       CHECK:   mbarrier.try_wait.parity.shared::cta.b64
//       CHECK:   "bar.sync 2, 256;"
// CHECK-COUNT-8:   wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}} p, 1, 1, 1;
//       CHECK:   "bar.arrive 3, 256;"
//       CHECK:   "wgmma.wait_group.sync.aligned 0;"
//       CHECK:   @p mbarrier.arrive.shared::cta.b64
// The pair meets before it leaves.
//       CHECK:   scf.if %[[CLUSTERED]] {
//  CHECK-NEXT:     "barrier.cluster.arrive.release;\0Abarrier.cluster.wait.acquire;"
//  CHECK-NEXT:   }
//  CHECK-NEXT:   gpu.return
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

// Split-KV: grid z is B * S (S = the workspace's dim 0); each block walks
// its split's share of the table row and writes O / l and the log-sum-exp of
// its rows to the workspace in f32; the combine kernel (a warp per token and
// head) merges the S partials in split order into out and lse.
// CHECK-LABEL: func.func @paged_attention_split
//       CHECK:   %[[S:.+]] = memref.dim %{{.+}}, %c0 : memref<?x?x?x16x128xf32>
//       CHECK:   %[[BS:.+]] = arith.muli %{{.+}}, %[[S]] : index
//       CHECK:   gpu.launch_func  @compact_kernels::@paged_attention_split_attention blocks in (%{{.+}}, %c4, %[[BS]])
//       CHECK:   gpu.launch_func  @compact_kernels::@paged_attention_split_combine
//  CHECK-SAME:     threads in (%c128, %c1, %c1)
// CHECK-LABEL: gpu.func @paged_attention_split_attention
//  CHECK-SAME:   compact.arg_names = ["q", "k_cache", "v_cache", "page_table", "ctx_lens", "block_table", "block_counts", "out", "scale", "lse", "partial_out", "partial_lse", "k_cache_map", "v_cache_map", "k_cache_row_map", "v_cache_row_map"]
//  CHECK-SAME:   compact.grid = "[ceil(C * s / 128), E, B * S]"
//       CHECK:   arith.remui %{{.+}}, %{{.+}} : index
//       CHECK:   arith.divui %{{.+}}, %{{.+}} : index
//       CHECK:   scf.for
//       CHECK:   vector.store {{.*}} : memref<?x?x?x16x128xf32>, vector<2xf32>
//       CHECK:   memref.store {{.*}} : memref<?x?x16x?xf32>
//   CHECK-NOT:   vector.store {{.*}} : memref<?x?x16x128xbf16>
// CHECK-LABEL: gpu.func @paged_attention_split_combine
//  CHECK-SAME:   compact.arg_names = ["partial_out", "partial_lse", "out", "lse"]
//  CHECK-SAME:   compact.grid = "[ceil(C * Hq / 4), B, 1]"
//       CHECK:   scf.for
//       CHECK:     arith.maximumf
//       CHECK:   scf.for
//       CHECK:     vector.load {{.*}} : memref<?x?x?x16x128xf32>, vector<4xf32>
//       CHECK:     vector.fma
//       CHECK:   vector.store {{.*}} : memref<?x?x16x128xbf16>, vector<4xbf16>
//       CHECK:   memref.store {{.*}} : memref<?x16x?xf32>
func.func @paged_attention_split(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
                                 %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
                                 %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                                 %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>,
                                 %lse: memref<?x16x?xf32>, %po: memref<?x?x?x16x128xf32>,
                                 %pl: memref<?x?x16x?xf32>) {
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out, %lse
      workspace(%po, %pl : memref<?x?x?x16x128xf32>, memref<?x?x16x?xf32>)
      {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32>
        into memref<?x?x16x128xbf16>, memref<?x16x?xf32>
  return
}

// -----

// The sm_80 fallback: ldmatrix fragments and mma.sync m16n8k16, no wgmma;
// one tile per iteration with the next one's copies in flight (cp.async,
// no tensor maps).
// CHECK-LABEL: func.func @attention_mma_sync
//   CHECK-NOT:   nvgpu.tma.create.descriptor
//       CHECK:   gpu.launch_func
// CHECK-LABEL: gpu.func @attention_mma_sync_attention
//  CHECK-SAME:   compact.arg_names = ["q", "k_cache", "v_cache", "page_table", "ctx_lens", "block_table", "block_counts", "out", "scale"]
//   CHECK-NOT:   compact.tensor_maps
//   CHECK-NOT:   wgmma
//       CHECK:   scf.for
//       CHECK:     nvgpu.device_async_copy
//       CHECK:     nvvm.cp.async.wait.group 1
//       CHECK:     nvgpu.ldmatrix
//       CHECK:     nvvm.mma.sync
//  CHECK-SAME:       shape = #nvvm.shape<m = 16, n = 8, k = 16>
//       CHECK:     llvm.nvvm.ex2.approx
//       CHECK:     nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = true}
//       CHECK:     nvvm.mma.sync
//       CHECK:     gpu.barrier
//       CHECK:     scf.yield
//   CHECK-NOT:   wgmma
//       CHECK:   gpu.return
func.func @attention_mma_sync(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
                              %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
                              %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                              %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>) {
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      {block_size = 128, compact.matrix_path = "mma_sync"}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32>
        into memref<?x?x16x128xbf16>
  return
}

// -----

// Fused selection: three launches on the stream, no mask and no scores in
// memory. clear zeroes the union words at the head of each table row; select
// computes S^T = K̄ Q^T on wgmma (m64n128k16: 64 pooled keys x the 128
// queries of the block), the row log-sum-exp, the threshold, and ORs the
// selected blocks into the union words; table expands the words into the
// ascending table and the count.
// CHECK-LABEL: func.func @score_select_union
//       CHECK:   gpu.launch_func  @compact_kernels::@score_select_union_clear
//       CHECK:   gpu.launch_func  @compact_kernels::@score_select_union_select
//  CHECK-SAME:     args(%arg0 : memref<?x?x16x128xbf16>, %arg1 : memref<?x4x?x128xbf16>, %arg2 : memref<?xi32>, %arg3 : memref<?x4x?xi32>
//       CHECK:   gpu.launch_func  @compact_kernels::@score_select_union_table
//  CHECK-SAME:     args(%arg2 : memref<?xi32>, %{{.*}} : index, %arg3 : memref<?x4x?xi32>, %arg4 : memref<?x4xi32>)
// CHECK-LABEL: gpu.func @score_select_union_clear
// CHECK-LABEL: gpu.func @score_select_union_select
//  CHECK-SAME:   compact.arg_names = ["q", "pooled", "ctx_lens", "table", "scale", "threshold", "sink", "window"]
//  CHECK-SAME:   compact.grid = "[ceil(C / bs), Hq, B]"
//       CHECK:   scf.for
//       CHECK:     nvgpu.device_async_copy %arg1
//       CHECK:     wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
//       CHECK:     "wgmma.wait_group.sync.aligned 0;"
//       CHECK:     llvm.nvvm.ex2.approx
//       CHECK:   nvvm.vote.sync ballot
//       CHECK:   memref.atomic_rmw ori
// CHECK-LABEL: gpu.func @score_select_union_table
//       CHECK:   math.ctpop
//       CHECK:   memref.store {{.*}} : memref<?x4xi32>
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

// -----

// The unfused union of an external mask: one block of 256 threads per
// execution group and sequence; ballots of mask bytes, popcounts for the
// positions in the ascending table.
// CHECK-LABEL: func.func @block_union
//       CHECK:   gpu.launch_func  @compact_kernels::@block_union_union blocks in (%c8, %{{.*}}, %c1) threads in (%c256, %c1, %c1)
// CHECK-LABEL: gpu.func @block_union_union
//  CHECK-SAME:   compact.arg_names = ["mask", "ctx_lens", "chunk_len", "table", "counts"]
//       CHECK:   memref.load %arg0
//       CHECK:   nvvm.vote.sync ballot
//       CHECK:   math.ctpop
//       CHECK:   memref.store {{.*}}, %arg3
//       CHECK:   memref.store {{.*}}, %arg4
func.func @block_union(%mask: memref<?x16x?x?xi8>, %lens: memref<?xi32>, %c: index,
                       %table: memref<?x8x?xi32>, %counts: memref<?x8xi32>) {
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 2}
      : memref<?x16x?x?xi8>, memref<?xi32> into memref<?x8x?xi32>, memref<?x8xi32>
  return
}

// -----

// Threshold of external scores into a mask: one block per (query block,
// head, sequence); the row maximum by warp shuffles, then one byte per block.
// CHECK-LABEL: gpu.func @select_blocks_select
//  CHECK-SAME:   compact.arg_names = ["scores", "ctx_lens", "chunk_len", "mask", "threshold", "sink", "window"]
//  CHECK-SAME:   compact.grid = "[Qb, Hq, B]"
//       CHECK:   gpu.shuffle  xor
//       CHECK:   gpu.barrier
//       CHECK:   memref.store {{.*}}, %arg3{{.*}} : memref<?x16x8x?xi8>
func.func @select_blocks(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
                         %mask: memref<?x16x8x?xi8>) {
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32,
       sink = 2, window = 4}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  return
}

// -----

// Appending a chunk's K/V into its pages: 16-byte vectors, the page from the
// page table.
// CHECK-LABEL: gpu.func @append_kv_append
//  CHECK-SAME:   compact.arg_names = ["k_new", "v_new", "page_table", "ctx_lens", "k_cache", "v_cache"]
//       CHECK:   memref.load %arg2
//       CHECK:   vector.load %arg0{{.*}} vector<8xbf16>
//       CHECK:   vector.store {{.*}}, %arg4{{.*}} vector<8xbf16>
//       CHECK:   vector.load %arg1
//       CHECK:   vector.store {{.*}}, %arg5
func.func @append_kv(%k: memref<?x?x4x128xbf16>, %v: memref<?x?x4x128xbf16>,
                     %pt: memref<?x?xi32>, %lens: memref<?xi32>,
                     %kc: memref<?x64x4x128xbf16>, %vc: memref<?x64x4x128xbf16>) {
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc
      : memref<?x?x4x128xbf16>, memref<?x?x4x128xbf16>, memref<?x?xi32>, memref<?xi32>
        into memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>
  return
}

// -----

// The execution-group cost model: one block of 256 threads per (KV group,
// row index) and sequence; the heads' rows become bits in shared memory
// (shared atomics), popcounts of the sub-group unions give the costs (block
// sums), and the chosen unions are written as ascending tables. The slack is
// a kernel argument.
// CHECK-LABEL: func.func @choose_exec_groups
//       CHECK:   gpu.launch_func  @compact_kernels::@choose_exec_groups_choose blocks in (%{{.+}}, %{{.+}}, %c1) threads in (%c256, %c1, %c1)  dynamic_shared_memory_size
// CHECK-LABEL: gpu.func @choose_exec_groups_choose
//  CHECK-SAME:   compact.arg_names = ["table", "counts", "slack"]
//  CHECK-SAME:   compact.grid = "[Hkv * T, B, 1]"
//  CHECK-SAME:   compact.shared_memory = array<i64: 64, 0, 20>
//       CHECK:   memref.atomic_rmw ori {{.+}} : (i32, memref<?xi32, #gpu.address_space<workgroup>>) -> i32
//       CHECK:   gpu.barrier
//       CHECK:   math.ctpop
//       CHECK:   arith.uitofp
//       CHECK:   arith.addf %arg2, %{{.+}} : f32
//       CHECK:   arith.cmpf ole
//       CHECK:   scf.if
//       CHECK:     memref.store {{.*}}, %arg0
//       CHECK:     memref.store {{.*}}, %arg1
func.func @choose_exec_groups(%table: memref<?x?x?xi32>, %counts: memref<?x?xi32>) {
  compact.choose_exec_groups %table, %counts {q_heads = 16, kv_heads = 4, slack = 0.5 : f32}
      : memref<?x?x?xi32>, memref<?x?xi32>
  return
}
