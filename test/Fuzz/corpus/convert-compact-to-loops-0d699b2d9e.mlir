func.func @pool_keys(%kc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
                     %lens: memref<?xi32>, %c: index, %pooled: memref<?x4x?x128xf32>) {
  compact.pool_keys %kc, %pt, %lens, %c into %pooled {block_size = 128}
      : memref<?x64x4x128xbf16>, memref<?x?xi32>, memref<?xi32> into memref<?x4x?x128xf32>
  return
}
