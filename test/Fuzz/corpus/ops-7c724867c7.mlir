func.func @dense_table(%lens: memref<?xi32>, %table: memref<?x16x?xi32>, %counts: memref<?x16xi32>) {
  compact.dense_table %lens into %table, %counts {block_size = 128}
      : memref<?xi32> into memref<?x16x?xi32>, memref<?x16xi32>
  return
}
