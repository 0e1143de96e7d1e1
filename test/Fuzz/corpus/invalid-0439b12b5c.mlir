func.func @block_scores_head_dim(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x64xf32>,
    %lens: memref<?xi32>, %scores: memref<?x16x?x?xf32>) {
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x4x?x64xf32>, memref<?xi32> into memref<?x16x?x?xf32>
  return
}
