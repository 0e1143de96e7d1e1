func.func @score_select_union_tables(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
    %lens: memref<?xi32>, %table: memref<?x8x?xi32>, %counts: memref<?x8xi32>) {
  compact.score_select_union %q, %pooled, %lens into %table, %counts
      {block_size = 128, exec_group_size = 1, mode = #compact.threshold<rowmax_log>,
       threshold = 0.06 : f32}
      : memref<?x?x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32>
        into memref<?x8x?xi32>, memref<?x8xi32>
  return
}
