func.func @score_select_union(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x128xbf16>,
                              %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                              %counts: memref<?x4xi32>) {
  compact.score_select_union %q, %pooled, %lens into %table, %counts
      {block_size = 128, exec_group_size = 4, mode = #compact.threshold<rowmax_log>,
       threshold = 0.06 : f32, sink = 2, window = 4}
      : memref<?x?x16x128xbf16>, memref<?x4x?x128xbf16>, memref<?xi32>
        into memref<?x4x?xi32>, memref<?x4xi32>
  return
}
