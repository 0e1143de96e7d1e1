func.func @block_union_per_query_block(%mask: memref<?x16x8x?xi8>, %lens: memref<?xi32>,
                                       %c: index, %table: memref<?x32x?xi32>,
                                       %counts: memref<?x32xi32>) {
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x8x?xi8>, memref<?xi32> into memref<?x32x?xi32>, memref<?x32xi32>
  return
}
