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
