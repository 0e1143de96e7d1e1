func.func @select_union_group(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
    %table: memref<?x2x?xi32>, %counts: memref<?x2xi32>) {
  compact.select_union %scores, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 8,
       mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x2x?xi32>, memref<?x2xi32>
  return
}
