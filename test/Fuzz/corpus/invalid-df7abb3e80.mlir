func.func @select_blocks_infinite(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
    %mask: memref<?x16x8x?xi8>) {
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<absolute>, threshold = 0x7F800000 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  return
}
