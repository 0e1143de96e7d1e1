func.func @paged_attention_hnd(%q: memref<?x?x8x64xf16>, %kc: memref<?x2x32x64xf16>,
                               %vc: memref<?x2x32x64xf16>, %pt: memref<?x?xi32>,
                               %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                               %counts: memref<?x4xi32>, %out: memref<?x?x8x64xf16>) {
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      {block_size = 64, layout = #compact.layout<hnd>}
      : memref<?x?x8x64xf16>, memref<?x2x32x64xf16>, memref<?x2x32x64xf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32>
        into memref<?x?x8x64xf16>
  return
}
