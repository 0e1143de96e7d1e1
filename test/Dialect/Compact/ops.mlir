// RUN: compact-opt %s -split-input-file | compact-opt -split-input-file | FileCheck %s --enable-var-scope
// RUN: compact-opt %s -split-input-file --mlir-print-op-generic | compact-opt -split-input-file | FileCheck %s --enable-var-scope

// CHECK-LABEL: func @append_kv
func.func @append_kv(%k: memref<?x?x4x128xbf16>, %v: memref<?x?x4x128xbf16>,
                     %pt: memref<?x?xi32>, %lens: memref<?xi32>,
                     %kc: memref<?x4x64x128xbf16>, %vc: memref<?x4x64x128xbf16>) {
  // CHECK: compact.append_kv %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} into %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} {layout = #compact.layout<hnd>}
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc {layout = #compact.layout<hnd>}
      : memref<?x?x4x128xbf16>, memref<?x?x4x128xbf16>, memref<?x?xi32>, memref<?xi32>
        into memref<?x4x64x128xbf16>, memref<?x4x64x128xbf16>
  return
}


// -----

// CHECK-LABEL: func @pool_keys
func.func @pool_keys(%kc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
                     %lens: memref<?xi32>, %c: index, %pooled: memref<?x4x?x128xf32>) {
  // CHECK: compact.pool_keys %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} into %{{[a-z0-9_]+}} {block_size = 128 : i64}
  // CHECK-SAME: memref<?x64x4x128xbf16>, memref<?x?xi32>, memref<?xi32> into memref<?x4x?x128xf32>
  compact.pool_keys %kc, %pt, %lens, %c into %pooled {block_size = 128}
      : memref<?x64x4x128xbf16>, memref<?x?xi32>, memref<?xi32> into memref<?x4x?x128xf32>
  return
}

// -----

// CHECK-LABEL: func @block_scores
func.func @block_scores(%q: memref<?x1000x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
                        %lens: memref<?xi32>, %scores: memref<?x16x8x?xf32>) {
  // CHECK: compact.block_scores %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} into %{{[a-z0-9_]+}} {block_size = 128 : i64, scale = 1.250000e-01 : f32}
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128, scale = 0.125 : f32}
      : memref<?x1000x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32> into memref<?x16x8x?xf32>
  return
}

// -----

// CHECK-LABEL: func @select_blocks
func.func @select_blocks(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
                         %mask: memref<?x16x8x?xi8>) {
  // CHECK: compact.select_blocks %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} into %{{[a-z0-9_]+}}
  // CHECK-SAME: mode = #compact.threshold<rowmax_log>, sink = 2 : i64, threshold = 6.000000e-02 : f32, window = 4 : i64
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32,
       sink = 2, window = 4}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  // Gate probabilities, absolute threshold, no sink / window.
  // CHECK: compact.select_blocks
  // CHECK-SAME: mode = #compact.threshold<absolute>, threshold = 5.000000e-01 : f32
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<absolute>, threshold = 0.5 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  return
}

// -----

// CHECK-LABEL: func @block_union
func.func @block_union(%mask: memref<?x16x?x?xi8>, %lens: memref<?xi32>, %c: index,
                       %table: memref<?x8x?xi32>, %counts: memref<?x8xi32>) {
  // Sub-groups: s = 2 of G = 4, so E = 8 tables per sequence.
  // CHECK: compact.block_union %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} into %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} {block_size = 128 : i64, exec_group_size = 2 : i64, kv_heads = 4 : i64}
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 2}
      : memref<?x16x?x?xi8>, memref<?xi32> into memref<?x8x?xi32>, memref<?x8xi32>
  return
}

// -----

// One table per query block: E * Qb = 4 * 8 rows.
// CHECK-LABEL: func @block_union_per_query_block
func.func @block_union_per_query_block(%mask: memref<?x16x8x?xi8>, %lens: memref<?xi32>,
                                       %c: index, %table: memref<?x32x?xi32>,
                                       %counts: memref<?x32xi32>) {
  // CHECK: compact.block_union
  // CHECK-SAME: memref<?x16x8x?xi8>, memref<?xi32> into memref<?x32x?xi32>, memref<?x32xi32>
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x8x?xi8>, memref<?xi32> into memref<?x32x?xi32>, memref<?x32xi32>
  return
}

// -----

// CHECK-LABEL: func @select_union
func.func @select_union(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
                        %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  // CHECK: compact.select_union %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} into %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}
  // CHECK-SAME: exec_group_size = 4 : i64, kv_heads = 4 : i64, mode = #compact.threshold<rowmax>
  compact.select_union %scores, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4,
       mode = #compact.threshold<rowmax>, threshold = 0.25 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

// CHECK-LABEL: func @score_select_union
func.func @score_select_union(%q: memref<?x?x32x128xf16>, %pooled: memref<?x8x?x128xbf16>,
                              %lens: memref<?xi32>, %table: memref<?x32x?xi32>,
                              %counts: memref<?x32xi32>) {
  // Per-head tables: s = 1.
  // CHECK: compact.score_select_union %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} into %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}
  // CHECK-SAME: exec_group_size = 1 : i64
  // CHECK-SAME: memref<?x?x32x128xf16>, memref<?x8x?x128xbf16>, memref<?xi32> into memref<?x32x?xi32>, memref<?x32xi32>
  compact.score_select_union %q, %pooled, %lens into %table, %counts
      {block_size = 128, exec_group_size = 1, mode = #compact.threshold<rowmax_log>,
       threshold = 0.06 : f32, sink = 2, window = 4}
      : memref<?x?x32x128xf16>, memref<?x8x?x128xbf16>, memref<?xi32>
        into memref<?x32x?xi32>, memref<?x32xi32>
  return
}

// -----

// CHECK-LABEL: func @choose_exec_groups
func.func @choose_exec_groups(%table: memref<?x?x?xi32>, %counts: memref<?x?xi32>) {
  // CHECK: compact.choose_exec_groups %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} {kv_heads = 4 : i64, q_heads = 16 : i64, slack = 5.000000e-01 : f32} : memref<?x?x?xi32>, memref<?x?xi32>
  compact.choose_exec_groups %table, %counts {q_heads = 16, kv_heads = 4, slack = 0.5 : f32}
      : memref<?x?x?xi32>, memref<?x?xi32>
  return
}

// -----

// The slack defaults to 0 (time-optimal per-head tables).
// CHECK-LABEL: func @choose_exec_groups_default_slack
func.func @choose_exec_groups_default_slack(%table: memref<?x128x?xi32>, %counts: memref<?x128xi32>) {
  // CHECK: compact.choose_exec_groups %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} {kv_heads = 4 : i64, q_heads = 16 : i64} : memref<?x128x?xi32>, memref<?x128xi32>
  compact.choose_exec_groups %table, %counts {q_heads = 16, kv_heads = 4}
      : memref<?x128x?xi32>, memref<?x128xi32>
  return
}

// -----

// CHECK-LABEL: func @dense_table
func.func @dense_table(%lens: memref<?xi32>, %table: memref<?x16x?xi32>, %counts: memref<?x16xi32>) {
  // CHECK: compact.dense_table %{{[a-z0-9_]+}} into %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} {block_size = 128 : i64}
  compact.dense_table %lens into %table, %counts {block_size = 128}
      : memref<?xi32> into memref<?x16x?xi32>, memref<?x16xi32>
  return
}

// -----

// CHECK-LABEL: func @paged_attention
func.func @paged_attention(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
                           %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
                           %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                           %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>,
                           %lse: memref<?x16x?xf32>) {
  // CHECK: compact.paged_attention %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} into %{{[a-z0-9_]+}} {block_size = 128 : i64}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32>
        into memref<?x?x16x128xbf16>
  // With the log-sum-exp output and an explicit scale.
  // CHECK: compact.paged_attention {{.*}} into %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} {block_size = 256 : i64, scale = 5.000000e-01 : f32}
  // CHECK-SAME: into memref<?x?x16x128xbf16>, memref<?x16x?xf32>
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out, %lse
      {block_size = 256, scale = 0.5 : f32}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32>
        into memref<?x?x16x128xbf16>, memref<?x16x?xf32>
  return
}

// -----

// A split workspace (S partial results, S a run-time size).
// CHECK-LABEL: func @paged_attention_split
func.func @paged_attention_split(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
                                 %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
                                 %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                                 %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>,
                                 %lse: memref<?x16x?xf32>, %po: memref<?x?x?x16x128xf32>,
                                 %pl: memref<?x?x16x?xf32>) {
  // CHECK: compact.paged_attention {{.*}} into %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} workspace(%{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} : memref<?x?x?x16x128xf32>, memref<?x?x16x?xf32>) {block_size = 128 : i64}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out, %lse
      workspace(%po, %pl : memref<?x?x?x16x128xf32>, memref<?x?x16x?xf32>)
      {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32>
        into memref<?x?x16x128xbf16>, memref<?x16x?xf32>
  return
}

// -----

// Table rows given at run time (E, or E * Qb): the execution group size is an
// attribute.
// CHECK-LABEL: func @paged_attention_dynamic_rows
func.func @paged_attention_dynamic_rows(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
                                        %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
                                        %lens: memref<?xi32>, %table: memref<?x?x?xi32>,
                                        %counts: memref<?x?xi32>, %out: memref<?x?x16x128xbf16>) {
  // CHECK: compact.paged_attention {{.*}} {block_size = 128 : i64, exec_group_size = 1 : i64}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      {block_size = 128, exec_group_size = 1}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x?x?xi32>, memref<?x?xi32>
        into memref<?x?x16x128xbf16>
  return
}
