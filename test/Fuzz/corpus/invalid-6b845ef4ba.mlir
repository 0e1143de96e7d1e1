func.func @block_union_tables(%mask: memref<?x16x?x?xi8>, %lens: memref<?xi32>, %c: index,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 2}
      : memref<?x16x?x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}
