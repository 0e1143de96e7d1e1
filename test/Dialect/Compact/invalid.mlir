// RUN: compact-opt %s -split-input-file -verify-diagnostics

// Shorthands used below: B batch, C chunk, Hq 16 query heads, Hkv 4 kv heads,
// D 128 head dim, PS 64 page size.

func.func @append_kv_value_type(%k: memref<?x?x4x128xbf16>, %v: memref<?x?x4x128xf16>,
    %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %kc: memref<?x64x4x128xbf16>, %vc: memref<?x64x4x128xbf16>) {
  // expected-error @below {{operand 'v_new' must have the type of 'k_new' ('memref<?x?x4x128xbf16>'), got 'memref<?x?x4x128xf16>'}}
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc
      : memref<?x?x4x128xbf16>, memref<?x?x4x128xf16>, memref<?x?xi32>, memref<?xi32>
        into memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>
  return
}

// -----

func.func @append_kv_element_type(%k: memref<?x?x4x128xf16>, %v: memref<?x?x4x128xf16>,
    %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %kc: memref<?x64x4x128xbf16>, %vc: memref<?x64x4x128xbf16>) {
  // expected-error @below {{operand 'k_new' must have element type 'bf16' like 'k_cache', got 'f16'}}
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc
      : memref<?x?x4x128xf16>, memref<?x?x4x128xf16>, memref<?x?xi32>, memref<?xi32>
        into memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>
  return
}

// -----

func.func @append_kv_dynamic_page(%k: memref<?x?x4x128xbf16>, %v: memref<?x?x4x128xbf16>,
    %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %kc: memref<?x?x4x128xbf16>, %vc: memref<?x?x4x128xbf16>) {
  // expected-error @below {{operand 'k_cache' dim 1 (page size) must be static; generated code is specialised on it}}
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc
      : memref<?x?x4x128xbf16>, memref<?x?x4x128xbf16>, memref<?x?xi32>, memref<?xi32>
        into memref<?x?x4x128xbf16>, memref<?x?x4x128xbf16>
  return
}

// -----

// Found by compact-fuzz: a page size of 0 divided by zero in the verifier.
func.func @pool_keys_zero_page(%kc: memref<?x0x4x128xbf16>, %pt: memref<?x?xi32>,
    %lens: memref<?xi32>, %c: index, %pooled: memref<?x4x?x128xf32>) {
  // expected-error @below {{operand 'k_cache' dim 1 (page size) must be positive, got 0}}
  compact.pool_keys %kc, %pt, %lens, %c into %pooled {block_size = 128}
      : memref<?x0x4x128xbf16>, memref<?x?xi32>, memref<?xi32> into memref<?x4x?x128xf32>
  return
}

// -----

func.func @append_kv_heads(%k: memref<?x?x8x128xbf16>, %v: memref<?x?x8x128xbf16>,
    %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %kc: memref<?x4x64x128xbf16>, %vc: memref<?x4x64x128xbf16>) {
  // expected-error @below {{operand 'k_new' dim 2 (kv heads) must be 4 to match 'k_cache', got 8}}
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc {layout = #compact.layout<hnd>}
      : memref<?x?x8x128xbf16>, memref<?x?x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
        into memref<?x4x64x128xbf16>, memref<?x4x64x128xbf16>
  return
}

// -----

func.func @append_kv_batch(%k: memref<2x?x4x128xbf16>, %v: memref<2x?x4x128xbf16>,
    %pt: memref<3x?xi32>, %lens: memref<?xi32>,
    %kc: memref<?x64x4x128xbf16>, %vc: memref<?x64x4x128xbf16>) {
  // expected-error @below {{operand 'page_table' dim 0 (batch) must be 2 to match 'k_new' dim 0, got 3}}
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc
      : memref<2x?x4x128xbf16>, memref<2x?x4x128xbf16>, memref<3x?xi32>, memref<?xi32>
        into memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>
  return
}

// -----

func.func @pool_keys_block_size(%kc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
    %lens: memref<?xi32>, %c: index, %pooled: memref<?x4x?x128xf32>) {
  // expected-error @below {{attribute 'block_size' (96) must be a multiple of the page size (64)}}
  compact.pool_keys %kc, %pt, %lens, %c into %pooled {block_size = 96}
      : memref<?x64x4x128xbf16>, memref<?x?xi32>, memref<?xi32> into memref<?x4x?x128xf32>
  return
}

// -----

func.func @pool_keys_zero_block(%kc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
    %lens: memref<?xi32>, %c: index, %pooled: memref<?x4x?x128xf32>) {
  // expected-error @below {{attribute 'block_size' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  compact.pool_keys %kc, %pt, %lens, %c into %pooled {block_size = 0}
      : memref<?x64x4x128xbf16>, memref<?x?xi32>, memref<?xi32> into memref<?x4x?x128xf32>
  return
}

// -----

func.func @pool_keys_head_dim(%kc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
    %lens: memref<?xi32>, %c: index, %pooled: memref<?x4x?x64xf32>) {
  // expected-error @below {{operand 'pooled' dim 3 (head dim) must be 128 to match 'k_cache', got 64}}
  compact.pool_keys %kc, %pt, %lens, %c into %pooled {block_size = 128}
      : memref<?x64x4x128xbf16>, memref<?x?xi32>, memref<?xi32> into memref<?x4x?x64xf32>
  return
}

// -----

func.func @pool_keys_pooled_type(%kc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
    %lens: memref<?xi32>, %c: index, %pooled: memref<?x4x?x128xi16>) {
  // expected-error @below {{operand #4 must be 4D memref of 32-bit float or bfloat16 type or 16-bit float values}}
  compact.pool_keys %kc, %pt, %lens, %c into %pooled {block_size = 128}
      : memref<?x64x4x128xbf16>, memref<?x?xi32>, memref<?xi32> into memref<?x4x?x128xi16>
  return
}

// -----

func.func @block_scores_dynamic_heads(%q: memref<?x?x?x128xbf16>, %pooled: memref<?x4x?x128xf32>,
    %lens: memref<?xi32>, %scores: memref<?x16x?x?xf32>) {
  // expected-error @below {{operand 'q' dim 2 (query heads) must be static; generated code is specialised on it}}
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128}
      : memref<?x?x?x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32> into memref<?x16x?x?xf32>
  return
}

// -----

func.func @block_scores_gqa(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x3x?x128xf32>,
    %lens: memref<?xi32>, %scores: memref<?x16x?x?xf32>) {
  // expected-error @below {{query heads (16) must be a multiple of the kv heads of 'pooled' (dim 1) (3)}}
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x3x?x128xf32>, memref<?xi32> into memref<?x16x?x?xf32>
  return
}

// -----

func.func @block_scores_head_dim(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x64xf32>,
    %lens: memref<?xi32>, %scores: memref<?x16x?x?xf32>) {
  // expected-error @below {{operand 'pooled' dim 3 (head dim) must be 128 to match 'q' dim 3, got 64}}
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x4x?x64xf32>, memref<?xi32> into memref<?x16x?x?xf32>
  return
}

// -----

func.func @block_scores_query_blocks(%q: memref<?x1000x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
    %lens: memref<?xi32>, %scores: memref<?x16x7x?xf32>) {
  // expected-error @below {{operand 'scores' dim 2 (query blocks) must be 8 to match ceil(chunk length / block_size), got 7}}
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128}
      : memref<?x1000x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32> into memref<?x16x7x?xf32>
  return
}

// -----

func.func @block_scores_heads(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
    %lens: memref<?xi32>, %scores: memref<?x32x?x?xf32>) {
  // expected-error @below {{operand 'scores' dim 1 (query heads) must be 16 to match 'q' dim 2, got 32}}
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32> into memref<?x32x?x?xf32>
  return
}

// -----

func.func @block_scores_capacity(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x64x128xf32>,
    %lens: memref<?xi32>, %scores: memref<?x16x?x32xf32>) {
  // expected-error @below {{operand 'scores' dim 3 (kv block capacity) must be 64 to match 'pooled' dim 2, got 32}}
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x4x64x128xf32>, memref<?xi32> into memref<?x16x?x32xf32>
  return
}

// -----

func.func @block_scores_scale(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
    %lens: memref<?xi32>, %scores: memref<?x16x?x?xf32>) {
  // expected-error @below {{attribute 'scale' must be positive and finite, got -1.000000e+00}}
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128, scale = -1.0 : f32}
      : memref<?x?x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32> into memref<?x16x?x?xf32>
  return
}

// -----

func.func @select_blocks_shape(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
    %mask: memref<?x16x4x?xi8>) {
  // expected-error @below {{operand 'mask' dim 2 (query blocks) must be 8 to match 'scores' dim 2, got 4}}
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x4x?xi8>
  return
}

// -----

func.func @select_blocks_alpha(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
    %mask: memref<?x16x8x?xi8>) {
  // expected-error @below {{attribute 'threshold' must be in (0, 1] for mode rowmax_log, got 1.500000e+00}}
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 1.5 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  return
}

// -----

func.func @select_blocks_infinite(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
    %mask: memref<?x16x8x?xi8>) {
  // expected-error @below {{attribute 'threshold' must be finite, got INF}}
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<absolute>, threshold = 0x7F800000 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  return
}

// -----

func.func @select_blocks_sink(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
    %mask: memref<?x16x8x?xi8>) {
  // expected-error @+2 {{attribute 'sink' failed to satisfy constraint: 64-bit signless integer attribute whose value is non-negative}}
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32, sink = -1}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
  return
}

// -----

func.func @select_blocks_mask_type(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
    %mask: memref<?x16x8x?xi1>) {
  // expected-error @below {{operand #3 must be 4D memref of 8-bit signless integer values}}
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi1>
  return
}

// -----

func.func @block_union_kv_heads(%mask: memref<?x16x?x?xi8>, %lens: memref<?xi32>, %c: index,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  // expected-error @below {{attribute 'kv_heads' (3) must divide the query heads of 'mask' (dim 1, 16)}}
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 3, exec_group_size = 4}
      : memref<?x16x?x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

func.func @block_union_group(%mask: memref<?x16x?x?xi8>, %lens: memref<?xi32>, %c: index,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  // expected-error @below {{execution group size 'exec_group_size' (3) must divide the query heads per kv head (4)}}
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 3}
      : memref<?x16x?x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

func.func @block_union_tables(%mask: memref<?x16x?x?xi8>, %lens: memref<?xi32>, %c: index,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  // expected-error @below {{operand 'table' dim 1 (table rows, 4) must be E = query heads / exec_group_size (16 / 2 = 8) or a multiple of it (one table per query block)}}
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 2}
      : memref<?x16x?x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

func.func @block_union_counts(%mask: memref<?x16x?x?xi8>, %lens: memref<?xi32>, %c: index,
    %table: memref<?x4x?xi32>, %counts: memref<?x8xi32>) {
  // expected-error @below {{operand 'counts' dim 1 (table rows) must be 4 to match 'table' dim 1, got 8}}
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x?x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x8xi32>
  return
}

// -----

// One table per query block: E * Qb rows (Qb = 8 here), nothing in between.
func.func @block_union_query_block_tables(%mask: memref<?x16x8x?xi8>, %lens: memref<?xi32>,
    %c: index, %table: memref<?x12x?xi32>, %counts: memref<?x12xi32>) {
  // expected-error @below {{operand 'table' dim 1 (table rows, 12) must be E = query heads / exec_group_size (16 / 4 = 4) or E * Qb (one table per query block, 4 * 8 = 32)}}
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x8x?xi8>, memref<?xi32> into memref<?x12x?xi32>, memref<?x12xi32>
  return
}

// -----

func.func @block_union_capacity(%mask: memref<?x16x?x100xi8>, %lens: memref<?xi32>, %c: index,
    %table: memref<?x4x99xi32>, %counts: memref<?x4xi32>) {
  // expected-error @below {{operand 'table' dim 2 (kv block capacity) must be 100 to match 'mask' dim 3, got 99}}
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x?x100xi8>, memref<?xi32> into memref<?x4x99xi32>, memref<?x4xi32>
  return
}

// -----

func.func @block_union_batch(%mask: memref<2x16x?x?xi8>, %lens: memref<3xi32>, %c: index,
    %table: memref<2x4x?xi32>, %counts: memref<2x4xi32>) {
  // expected-error @below {{operand 'ctx_lens' dim 0 (batch) must be 2 to match 'mask' dim 0, got 3}}
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<2x16x?x?xi8>, memref<3xi32> into memref<2x4x?xi32>, memref<2x4xi32>
  return
}

// -----

func.func @select_union_alpha(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  // expected-error @below {{attribute 'threshold' must be in (0, 1] for mode rowmax, got 0.000000e+00}}
  compact.select_union %scores, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4,
       mode = #compact.threshold<rowmax>, threshold = 0.0 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

func.func @select_union_group(%scores: memref<?x16x8x?xf32>, %lens: memref<?xi32>, %c: index,
    %table: memref<?x2x?xi32>, %counts: memref<?x2xi32>) {
  // expected-error @below {{execution group size 'exec_group_size' (8) must divide the query heads per kv head (4)}}
  compact.select_union %scores, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 8,
       mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32}
      : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x2x?xi32>, memref<?x2xi32>
  return
}

// -----

func.func @score_select_union_group(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
    %lens: memref<?xi32>, %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  // expected-error @below {{execution group size 'exec_group_size' (3) must divide the query heads per kv head (4)}}
  compact.score_select_union %q, %pooled, %lens into %table, %counts
      {block_size = 128, exec_group_size = 3, mode = #compact.threshold<rowmax_log>,
       threshold = 0.06 : f32}
      : memref<?x?x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32>
        into memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

func.func @score_select_union_tables(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
    %lens: memref<?xi32>, %table: memref<?x8x?xi32>, %counts: memref<?x8xi32>) {
  // expected-error @below {{operand 'table' dim 1 (table rows, 8) must be E = query heads / exec_group_size (16 / 1 = 16) or a multiple of it (one table per query block)}}
  compact.score_select_union %q, %pooled, %lens into %table, %counts
      {block_size = 128, exec_group_size = 1, mode = #compact.threshold<rowmax_log>,
       threshold = 0.06 : f32}
      : memref<?x?x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32>
        into memref<?x8x?xi32>, memref<?x8xi32>
  return
}

// -----

func.func @paged_attention_cache_types(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x128x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>) {
  // expected-error @below {{operand 'v_cache' must have the type of 'k_cache' ('memref<?x64x4x128xbf16>'), got 'memref<?x128x4x128xbf16>'}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x128x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @paged_attention_workspace_heads(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>,
    %po: memref<?x?x?x8x128xf32>, %pl: memref<?x?x16x?xf32>) {
  // expected-error @below {{operand 'partial_out' dim 3 (query heads) must be 16 to match 'q' dim 2, got 8}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      workspace(%po, %pl : memref<?x?x?x8x128xf32>, memref<?x?x16x?xf32>) {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @paged_attention_workspace_splits(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>,
    %po: memref<2x?x?x16x128xf32>, %pl: memref<3x?x16x?xf32>) {
  // expected-error @below {{operand 'partial_lse' dim 0 (splits) must be 2 to match 'partial_out' dim 0, got 3}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      workspace(%po, %pl : memref<2x?x?x16x128xf32>, memref<3x?x16x?xf32>) {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @paged_attention_workspace_head_dim(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>,
    %po: memref<?x?x?x16x64xf32>, %pl: memref<?x?x16x?xf32>) {
  // expected-error @below {{operand 'partial_out' dim 4 (head dim) must be 128 to match 'q' dim 3, got 64}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      workspace(%po, %pl : memref<?x?x?x16x64xf32>, memref<?x?x16x?xf32>) {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @paged_attention_dtype(%q: memref<?x?x16x128xf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x128xf16>) {
  // expected-error @below {{operand 'k_cache' must have element type 'f16' like 'q', got 'bf16'}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out {block_size = 128}
      : memref<?x?x16x128xf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x128xf16>
  return
}

// -----

func.func @paged_attention_out(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x64xbf16>) {
  // expected-error @below {{operand 'out' must have the type of 'q' ('memref<?x?x16x128xbf16>'), got 'memref<?x?x16x64xbf16>'}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x64xbf16>
  return
}

// -----

func.func @paged_attention_head_dim(%q: memref<?x?x16x64xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x64xbf16>) {
  // expected-error @below {{operand 'k_cache' dim 3 (head dim) must be 64 to match 'q' dim 3, got 128}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out {block_size = 128}
      : memref<?x?x16x64xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x64xbf16>
  return
}

// -----

func.func @paged_attention_gqa(%q: memref<?x?x16x128xbf16>, %kc: memref<?x6x64x128xbf16>,
    %vc: memref<?x6x64x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>) {
  // expected-error @below {{query heads (16) must be a multiple of the kv heads of 'k_cache' (dim 1) (6)}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      {block_size = 128, layout = #compact.layout<hnd>}
      : memref<?x?x16x128xbf16>, memref<?x6x64x128xbf16>, memref<?x6x64x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @paged_attention_block_size(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>) {
  // expected-error @below {{attribute 'block_size' (32) must be a multiple of the page size (64)}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out {block_size = 32}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @paged_attention_groups(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x3x?xi32>, %counts: memref<?x3xi32>, %out: memref<?x?x16x128xbf16>) {
  // expected-error @below {{operand 'block_table' dim 1 (execution groups, 3) must divide the query heads (16)}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x3x?xi32>, memref<?x3xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @paged_attention_exec_group(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x2x?xi32>, %counts: memref<?x2xi32>, %out: memref<?x?x16x128xbf16>) {
  // expected-error @below {{execution group size query heads / 'block_table' dim 1 (8) must divide the query heads per kv head (4)}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x2x?xi32>, memref<?x2xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @paged_attention_counts(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x8xi32>, %out: memref<?x?x16x128xbf16>) {
  // expected-error @below {{operand 'block_counts' dim 1 (table rows) must be 4 to match 'block_table' dim 1, got 8}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x8xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @paged_attention_query_block_tables(%q: memref<?x1000x16x128xbf16>,
    %kc: memref<?x64x4x128xbf16>, %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
    %lens: memref<?xi32>, %table: memref<?x16x?xi32>, %counts: memref<?x16xi32>,
    %out: memref<?x1000x16x128xbf16>) {
  // expected-error @below {{operand 'block_table' dim 1 (table rows, 16) must be E = query heads / exec_group_size (16 / 4 = 4) or E * Qb (one table per query block, 4 * 8 = 32)}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      {block_size = 128, exec_group_size = 4}
      : memref<?x1000x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x16x?xi32>, memref<?x16xi32>
        into memref<?x1000x16x128xbf16>
  return
}

// -----

func.func @paged_attention_exec_group(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x?x?xi32>, %counts: memref<?x?xi32>, %out: memref<?x?x16x128xbf16>) {
  // expected-error @below {{execution group size 'exec_group_size' (3) must divide the query heads per kv head (4)}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      {block_size = 128, exec_group_size = 3}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x?x?xi32>, memref<?x?xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @paged_attention_lse(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>,
    %lse: memref<?x4x?xf32>) {
  // expected-error @below {{operand 'lse' dim 1 (query heads) must be 16 to match 'q' dim 2, got 4}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out, %lse {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32>
        into memref<?x?x16x128xbf16>, memref<?x4x?xf32>
  return
}

// -----

func.func @paged_attention_scale(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>) {
  // expected-error @below {{attribute 'scale' must be positive and finite, got 0.000000e+00}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out
      {block_size = 128, scale = 0.0 : f32}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @paged_attention_element_type(%q: memref<?x?x16x128xi32>, %kc: memref<?x64x4x128xbf16>,
    %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>) {
  // expected-error @below {{operand #0 must be 4D memref of bfloat16 type or 16-bit float or 32-bit float values}}
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out {block_size = 128}
      : memref<?x?x16x128xi32>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x128xbf16>
  return
}

// -----

func.func @dense_table_groups(%lens: memref<?xi32>, %table: memref<?x4x?xi32>, %counts: memref<?x8xi32>) {
  // expected-error @below {{operand 'counts' dim 1 (table rows) must be 4 to match 'table' dim 1, got 8}}
  compact.dense_table %lens into %table, %counts {block_size = 128}
      : memref<?xi32> into memref<?x4x?xi32>, memref<?x8xi32>
  return
}

// -----

func.func @choose_exec_groups_heads(%table: memref<?x?x?xi32>, %counts: memref<?x?xi32>) {
  // expected-error @below {{attribute 'kv_heads' (3) must divide attribute 'q_heads' (16)}}
  compact.choose_exec_groups %table, %counts {q_heads = 16, kv_heads = 3}
      : memref<?x?x?xi32>, memref<?x?xi32>
  return
}

// -----

func.func @choose_exec_groups_negative_slack(%table: memref<?x?x?xi32>, %counts: memref<?x?xi32>) {
  // expected-error @below {{attribute 'slack' must be finite and >= 0, got -5.000000e-01}}
  compact.choose_exec_groups %table, %counts {q_heads = 16, kv_heads = 4, slack = -0.5 : f32}
      : memref<?x?x?xi32>, memref<?x?xi32>
  return
}

// -----

func.func @choose_exec_groups_nan_slack(%table: memref<?x?x?xi32>, %counts: memref<?x?xi32>) {
  // expected-error @below {{attribute 'slack' must be finite and >= 0, got nan}}
  compact.choose_exec_groups %table, %counts {q_heads = 16, kv_heads = 4, slack = 0x7FC00000 : f32}
      : memref<?x?x?xi32>, memref<?x?xi32>
  return
}

// -----

func.func @choose_exec_groups_rows(%table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  // expected-error @below {{operand 'table' dim 1 (table rows, 4) must be a multiple of attribute 'q_heads' (16): per-head tables, T rows per head}}
  compact.choose_exec_groups %table, %counts {q_heads = 16, kv_heads = 4}
      : memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

func.func @choose_exec_groups_counts(%table: memref<?x16x?xi32>, %counts: memref<?x32xi32>) {
  // expected-error @below {{operand 'counts' dim 1 (table rows) must be 16 to match 'table' dim 1, got 32}}
  compact.choose_exec_groups %table, %counts {q_heads = 16, kv_heads = 4}
      : memref<?x16x?xi32>, memref<?x32xi32>
  return
}

// -----

func.func @choose_exec_groups_batch(%table: memref<2x16x?xi32>, %counts: memref<3x16xi32>) {
  // expected-error @below {{operand 'counts' dim 0 (batch) must be 2 to match 'table' dim 0, got 3}}
  compact.choose_exec_groups %table, %counts {q_heads = 16, kv_heads = 4}
      : memref<2x16x?xi32>, memref<3x16xi32>
  return
}
