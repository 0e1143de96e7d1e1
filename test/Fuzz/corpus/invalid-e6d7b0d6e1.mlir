func.func @paged_attention_head_dim(%q: memref<?x?x16x64xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x64xbf16>) {
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out {block_size = 128}
      : memref<?x?x16x64xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x64xbf16>
  return
}
