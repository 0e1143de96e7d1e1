func.func @dense_table_groups(%lens: memref<?xi32>, %table: memref<?x4x?xi32>, %counts: memref<?x8xi32>) {
  compact.dense_table %lens into %table, %counts {block_size = 128}
      : memref<?xi32> into memref<?x4x?xi32>, memref<?x8xi32>
  return
}
