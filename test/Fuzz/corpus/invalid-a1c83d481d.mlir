func.func @select_blocks_sink(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
    %mask: memref<?x16x8x?xi8>) {
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32, sink = -1}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  return
}
