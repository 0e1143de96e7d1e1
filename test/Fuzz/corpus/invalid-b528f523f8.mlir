func.func @block_union_batch(%mask: memref<2x16x?x?xi8>, %lens: memref<3xi32>, %c: index,
    %table: memref<2x4x?xi32>, %counts: memref<2x4xi32>) {
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<2x16x?x?xi8>, memref<3xi32> into memref<2x4x?xi32>, memref<2x4xi32>
  return
}
