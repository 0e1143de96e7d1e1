func.func @select_union_alpha(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  compact.select_union %scores, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4,
       mode = #compact.threshold<rowmax>, threshold = 0.0 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}
