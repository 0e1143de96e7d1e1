func.func @block_scores(%q: memref<?x1000x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
                        %lens: memref<?xi32>, %scores: memref<?x16x8x?xf32>) {
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128, scale = 0.125 : f32}
      : memref<?x1000x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32> into memref<?x16x8x?xf32>
  return
}
