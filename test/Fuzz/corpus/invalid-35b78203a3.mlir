func.func @paged_attention_query_block_tables(%q: memref<?x1000x16x128xbf16>,
    %kc: memref<?x64x4x128xbf16>, %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
    %lens: memref<?xi32>, %table: memref<?x16x?xi32>, %counts: memref<?x16xi32>,
    %out: memref<?x1000x16x128xbf16>) {
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      {block_size = 128, exec_group_size = 4}
      : memref<?x1000x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x16x?xi32>, memref<?x16xi32>
        into memref<?x1000x16x128xbf16>
  return
}
