// RUN: compact-opt %s -split-input-file -compact-fuse-selection | FileCheck %s --enable-var-scope

// The whole FlashPrefill chain collapses: neither scores nor mask remain.
// CHECK-LABEL: func @flashprefill_chain
//  CHECK-SAME:   (%[[Q:[a-z0-9_-]+]]: memref<?x?x16x128xbf16>, %[[POOLED:[a-z0-9_-]+]]: memref<?x4x?x128xf32>, %[[LENS:[a-z0-9_-]+]]: memref<?xi32>, %[[TABLE:[a-z0-9_-]+]]: memref<?x4x?xi32>, %[[COUNTS:[a-z0-9_-]+]]: memref<?x4xi32>)
//   CHECK-NOT:   memref.alloc
//   CHECK-NOT:   compact.block_scores
//   CHECK-NOT:   compact.select_blocks
//       CHECK:   compact.score_select_union %[[Q]], %[[POOLED]], %[[LENS]] into %[[TABLE]], %[[COUNTS]]
//  CHECK-SAME:     block_size = 128 : i64, exec_group_size = 4 : i64, mode = #compact.threshold<rowmax_log>, scale = 1.250000e-01 : f32, sink = 2 : i64, threshold = 6.000000e-02 : f32, window = 4 : i64
//   CHECK-NOT:   memref.dealloc
//       CHECK:   return
func.func @flashprefill_chain(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
                              %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                              %counts: memref<?x4xi32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %b = memref.dim %q, %c0 : memref<?x?x16x128xbf16>
  %c = memref.dim %q, %c1 : memref<?x?x16x128xbf16>
  %c2 = arith.constant 2 : index
  %kb = memref.dim %pooled, %c2 : memref<?x4x?x128xf32>
  %qb = arith.ceildivui %c, %c0 : index
  %scores = memref.alloc(%b, %qb, %kb) : memref<?x16x?x?xf32>
  %mask = memref.alloc(%b, %qb, %kb) : memref<?x16x?x?xi8>
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128, scale = 0.125 : f32}
      : memref<?x?x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32> into memref<?x16x?x?xf32>
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32,
       sink = 2, window = 4}
      : memref<?x16x?x?xf32>, memref<?xi32> into memref<?x16x?x?xi8>
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x?x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  memref.dealloc %mask : memref<?x16x?x?xi8>
  memref.dealloc %scores : memref<?x16x?x?xf32>
  return
}

// -----

// Scores from outside (a learned gate): thresholding fuses into the union, the
// scores buffer stays.
// CHECK-LABEL: func @external_scores
//  CHECK-SAME:   (%[[SCORES:[a-z0-9]+]]: memref<?x16x8x?xf32>, %[[LENS:[a-z0-9]+]]: memref<?xi32>, %[[C:[a-z0-9]+]]: index,
//   CHECK-NOT:   memref.alloca
//       CHECK:   compact.select_union %[[SCORES]], %[[LENS]], %[[C]] into
//  CHECK-SAME:     exec_group_size = 2 : i64, kv_heads = 4 : i64, mode = #compact.threshold<absolute>
//   CHECK-NOT:   compact.block_union
func.func @external_scores(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
                           %table: memref<?x8x?xi32>, %counts: memref<?x8xi32>,
                           %b: index, %kb: index) {
  %mask = memref.alloca(%b, %kb) : memref<?x16x8x?xi8>
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<absolute>, threshold = 0.5 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 2}
      : memref<?x16x8x?xi8>, memref<?xi32> into memref<?x8x?xi32>, memref<?x8xi32>
  return
}

// -----

// An external mask (a function argument) cannot be fused away.
// CHECK-LABEL: func @external_mask
//       CHECK:   compact.select_blocks
//       CHECK:   compact.block_union
//   CHECK-NOT:   compact.select_union
func.func @external_mask(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
                         %mask: memref<?x16x8x?xi8>, %table: memref<?x4x?xi32>,
                         %counts: memref<?x4xi32>) {
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x8x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

// The mask is read by someone else too: keep it.
// CHECK-LABEL: func @mask_also_copied
//       CHECK:   compact.select_blocks
//       CHECK:   compact.block_union
//       CHECK:   memref.copy
func.func @mask_also_copied(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
                            %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>,
                            %b: index, %kb: index, %dump: memref<?x16x8x?xi8>) {
  %mask = memref.alloc(%b, %kb) : memref<?x16x8x?xi8>
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x8x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  memref.copy %mask, %dump : memref<?x16x8x?xi8> to memref<?x16x8x?xi8>
  return
}

// -----

// The scores change between thresholding and union: fusing would read the
// new values, so nothing fuses.
// CHECK-LABEL: func @write_in_between
//       CHECK:   compact.select_blocks
//       CHECK:   memref.store
//       CHECK:   compact.block_union
func.func @write_in_between(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
                            %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>,
                            %b: index, %kb: index, %x: f32, %i: index) {
  %mask = memref.alloc(%b, %kb) : memref<?x16x8x?xi8>
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  memref.store %x, %scores[%i, %i, %i, %i] : memref<?x16x8x?xf32>
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x8x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

// Thresholding fuses, but the chunk length given to the union is not the
// scores' chunk length: scoring stays separate.
// CHECK-LABEL: func @chunk_length_mismatch
//       CHECK:   compact.block_scores
//       CHECK:   compact.select_union
//   CHECK-NOT:   compact.score_select_union
func.func @chunk_length_mismatch(%q: memref<?x1024x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
                                 %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                                 %counts: memref<?x4xi32>, %b: index, %kb: index) {
  %c = arith.constant 512 : index
  %scores = memref.alloc(%b, %kb) : memref<?x16x8x?xf32>
  %mask = memref.alloc(%b, %kb) : memref<?x16x8x?xi8>
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128}
      : memref<?x1024x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32> into memref<?x16x8x?xf32>
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x8x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}
