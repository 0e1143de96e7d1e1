func.func @score_select_union(%q: memref<?x?x32x128xf16>, %pooled: memref<?x8x?x128xbf16>,
                              %lens: memref<?xi32>, %table: memref<?x32x?xi32>,
                              %counts: memref<?x32xi32>) {
  compact.score_select_union %q, %pooled, %lens into %table, %counts
      {block_size = 128, exec_group_size = 1, mode = #compact.threshold<rowmax_log>,
       threshold = 0.06 : f32, sink = 2, window = 4}
      : memref<?x?x32x128xf16>, memref<?x8x?x128xbf16>, memref<?xi32>
        into memref<?x32x?xi32>, memref<?x32xi32>
  return
}
