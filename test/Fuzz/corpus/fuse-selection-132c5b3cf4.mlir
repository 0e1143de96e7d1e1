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
