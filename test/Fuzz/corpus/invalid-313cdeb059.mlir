func.func @block_union_query_block_tables(%mask: memref<?x16x8x?xi8>, %lens: memref<?xi32>,
    %c: index, %table: memref<?x12x?xi32>, %counts: memref<?x12xi32>) {
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x8x?xi8>, memref<?xi32> into memref<?x12x?xi32>, memref<?x12xi32>
  return
}
