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
