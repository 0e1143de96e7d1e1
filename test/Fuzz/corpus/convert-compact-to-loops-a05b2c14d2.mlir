func.func @dense_table(%lens: memref<?xi32>, %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  compact.dense_table %lens into %table, %counts {block_size = 128}
      : memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}
