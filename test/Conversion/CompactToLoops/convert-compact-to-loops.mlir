// RUN: compact-opt %s -split-input-file -convert-compact-to-loops -canonicalize -cse | FileCheck %s --enable-var-scope

// Paged attention: for each (sequence, group, head, tile of 16 rows), walk the
// group's block table; per block: scores, online softmax, P V.
// CHECK-LABEL: func @paged_attention
//  CHECK-SAME:   (%[[Q:[a-z0-9]+]]: memref<?x?x16x128xbf16>, %[[K:[a-z0-9]+]]: memref<?x64x4x128xbf16>, %[[V:[a-z0-9]+]]: memref<?x64x4x128xbf16>, %[[PT:[a-z0-9]+]]: memref<?x?xi32>, %[[LENS:[a-z0-9]+]]: memref<?xi32>, %[[TABLE:[a-z0-9]+]]: memref<?x4x?xi32>, %[[COUNTS:[a-z0-9]+]]: memref<?x4xi32>, %[[OUT:[a-z0-9]+]]: memref<?x?x16x128xbf16>, %[[LSE:[a-z0-9]+]]: memref<?x16x?xf32>)
//   CHECK-DAG:   %[[NEG_INF:[a-z0-9_-]+]] = arith.constant 0xFF800000 : f32
//   CHECK-DAG:   %[[SCALE:[a-z0-9_-]+]] = arith.constant 0.0883883461 : f32
// The running max m, running sum l, accumulator and score tile of a row tile.
//   CHECK-DAG:   %[[M:[a-z0-9_-]+]] = memref.alloca() : memref<16xf32>
//   CHECK-DAG:   %[[L:[a-z0-9_-]+]] = memref.alloca() : memref<16xf32>
//   CHECK-DAG:   %[[ACC:[a-z0-9_-]+]] = memref.alloca() : memref<16x128xf32>
//   CHECK-DAG:   %[[S:[a-z0-9_-]+]] = memref.alloca() : memref<16x128xf32>
//       CHECK:   scf.for %[[B:[a-z0-9_-]+]] = %{{.+}} to %{{.+}} step
//       CHECK:     %[[LEN:[a-z0-9_-]+]] = arith.index_cast %{{.+}} : i32 to index
//       CHECK:     %[[PREFIX:[a-z0-9_-]+]] = arith.subi %[[LEN]], %{{.+}} : index
//       CHECK:     scf.for %[[E:[a-z0-9_-]+]] = %{{.+}} to %{{.+}} step
//       CHECK:       scf.for %[[H:[a-z0-9_-]+]] = {{.+}} {
//       CHECK:         scf.for %[[T0:[a-z0-9_-]+]] = %{{.+}} to %{{.+}} step %c16 {
// The tile's table row: the group's (one table per group, T = 1).
//       CHECK:           %[[COUNT_I32:[a-z0-9_-]+]] = memref.load %[[COUNTS]][%[[B]], %[[E]]]
//       CHECK:           %[[COUNT:[a-z0-9_-]+]] = arith.index_cast %[[COUNT_I32]]
// The table walk: block ids from the group's table, read in place.
//       CHECK:           scf.for %[[I:[a-z0-9_-]+]] = %{{.+}} to %[[COUNT]] step
//       CHECK:             %[[KB_I32:[a-z0-9_-]+]] = memref.load %[[TABLE]][%[[B]], %[[E]], %[[I]]]
//       CHECK:             %[[KB:[a-z0-9_-]+]] = arith.index_cast %[[KB_I32]]
// S = scale * Q K^T, keys after the query's position masked to -inf.
//       CHECK:             %[[QROW:[a-z0-9_-]+]] = arith.extf %{{.+}} : vector<128xbf16> to vector<128xf32>
//       CHECK:               %[[VISIBLE:[a-z0-9_-]+]] = arith.cmpi ule, %{{.+}}, %{{.+}} : index
//       CHECK:               scf.if %[[VISIBLE]] -> (f32) {
//       CHECK:                 %[[PAGE_I32:[a-z0-9_-]+]] = memref.load %[[PT]][%[[B]], %{{.+}}]
//       CHECK:                 %[[PAGE:[a-z0-9_-]+]] = arith.index_cast %[[PAGE_I32]]
//       CHECK:                 %[[KROW:[a-z0-9_-]+]] = vector.load %[[K]][%[[PAGE]], %{{.+}}, %{{.+}}, %{{.+}}] : memref<?x64x4x128xbf16>, vector<128xbf16>
//       CHECK:                 vector.reduction <add>
//       CHECK:                 arith.mulf %{{.+}}, %[[SCALE]] : f32
//       CHECK:               } else {
//       CHECK:                 scf.yield %[[NEG_INF]] : f32
//       CHECK:               memref.store %{{.+}}, %[[S]]
// Online softmax: m' = max(m, rowmax S); c = exp(m - m'); S = exp(S - m');
// l' = c * l + sum(S); acc *= c.
//       CHECK:             %[[M_OLD:[a-z0-9_-]+]] = memref.load %[[M]]
//       CHECK:             %[[M_NEW:[a-z0-9_-]+]] = scf.for {{.+}} iter_args(%[[CUR:[a-z0-9_-]+]] = %[[M_OLD]]) -> (f32) {
//       CHECK:               arith.maximumf %[[CUR]]
//       CHECK:             %[[EMPTY:[a-z0-9_-]+]] = arith.cmpf oeq, %[[M_NEW]], %[[NEG_INF]]
//       CHECK:             %[[M_SAFE:[a-z0-9_-]+]] = arith.select %[[EMPTY]], %{{.+}}, %[[M_NEW]]
//       CHECK:             %[[DIFF:[a-z0-9_-]+]] = arith.subf %[[M_OLD]], %[[M_SAFE]]
//       CHECK:             %[[CORR:[a-z0-9_-]+]] = math.exp %[[DIFF]]
//       CHECK:             %[[BLOCK_SUM:[a-z0-9_-]+]] = scf.for
//       CHECK:               %[[SHIFTED:[a-z0-9_-]+]] = arith.subf %{{.+}}, %[[M_SAFE]]
//       CHECK:               %[[P:[a-z0-9_-]+]] = math.exp %[[SHIFTED]]
//       CHECK:               memref.store %[[P]], %[[S]]
//       CHECK:             %[[L_OLD:[a-z0-9_-]+]] = memref.load %[[L]]
//       CHECK:             %[[L_SCALED:[a-z0-9_-]+]] = arith.mulf %[[CORR]], %[[L_OLD]]
//       CHECK:             %[[L_NEW:[a-z0-9_-]+]] = arith.addf %[[L_SCALED]], %[[BLOCK_SUM]]
//       CHECK:             memref.store %[[L_NEW]], %[[L]]
//       CHECK:             memref.store %[[M_NEW]], %[[M]]
//       CHECK:             %[[CORR_V:[a-z0-9_-]+]] = vector.broadcast %[[CORR]]
//       CHECK:             arith.mulf %[[CORR_V]], %{{.+}} : vector<128xf32>
// acc += P V, one value row per key.
//       CHECK:             scf.for {{.+}} iter_args(%[[ACC_ROW:[a-z0-9_-]+]] = %{{.+}}) -> (vector<128xf32>)
//       CHECK:               vector.load %[[V]]
//       CHECK:               vector.fma %{{.+}}, %{{.+}}, %[[ACC_ROW]] : vector<128xf32>
// out = acc / l (zeros when the row saw nothing), lse = m + log l.
//       CHECK:           %[[SEEN:[a-z0-9_-]+]] = arith.cmpf ogt
//       CHECK:           %[[INV:[a-z0-9_-]+]] = arith.divf
//       CHECK:           arith.select %[[SEEN]], %[[INV]]
//       CHECK:           arith.truncf %{{.+}} : vector<128xf32> to vector<128xbf16>
//       CHECK:           vector.store %{{.+}}, %[[OUT]]
//       CHECK:           math.log
//       CHECK:           memref.store %{{.+}}, %[[LSE]]
func.func @paged_attention(%q: memref<?x?x16x128xbf16>, %kc: memref<?x64x4x128xbf16>,
                           %vc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
                           %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                           %counts: memref<?x4xi32>, %out: memref<?x?x16x128xbf16>,
                           %lse: memref<?x16x?xf32>) {
  compact.paged_attention %q, %kc, %vc, %pt, %lens, %table, %counts into %out, %lse
      {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>,
        memref<?x?xi32>, memref<?xi32>, memref<?x4x?xi32>, memref<?x4xi32>
        into memref<?x?x16x128xbf16>, memref<?x16x?xf32>
  return
}

// -----

// HND pages: the kv head comes before the slot.
// CHECK-LABEL: func @paged_attention_hnd
//       CHECK:   vector.load %{{.+}}[%{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}] : memref<?x2x32x64xf16>, vector<64xf16>
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

// -----

// Block union: per (sequence, group) OR the causally valid part of every
// head's rows into flags, add the chunk's blocks, compact the flags.
// CHECK-LABEL: func @block_union
//  CHECK-SAME:   (%[[MASK:[a-z0-9]+]]: memref<?x16x?x?xi8>, %[[LENS:[a-z0-9]+]]: memref<?xi32>, %[[C:[a-z0-9]+]]: index, %[[TABLE:[a-z0-9]+]]: memref<?x4x?xi32>, %[[COUNTS:[a-z0-9]+]]: memref<?x4xi32>)
//   CHECK-DAG:   %[[PAD:[a-z0-9_-]+]] = arith.constant -1 : i32
//   CHECK-DAG:   %[[KB_CAP:[a-z0-9_-]+]] = memref.dim %[[TABLE]], %c2
//       CHECK:   %[[FLAGS:[a-z0-9_-]+]] = memref.alloca(%[[KB_CAP]]) : memref<?xi8>
//       CHECK:   scf.for %[[B:[a-z0-9_-]+]] = {{.+}} {
//       CHECK:     %[[LEN:[a-z0-9_-]+]] = arith.index_cast
//       CHECK:     %[[PREFIX:[a-z0-9_-]+]] = arith.subi %[[LEN]], %[[C]]
//       CHECK:     %[[NUM_BLOCKS:[a-z0-9_-]+]] = arith.ceildivui %[[LEN]], %c128
//       CHECK:     scf.for %[[E:[a-z0-9_-]+]] = %c0 to %c4
// Clear the group's flags.
//       CHECK:       scf.for %[[K0:[a-z0-9_-]+]] = %c0 to %[[KB_CAP]]
//       CHECK:         memref.store %c0_i8, %[[FLAGS]][%[[K0]]]
// Heads 4e .. 4e + 3, every query block, blocks up to last(qb) only.
//       CHECK:       scf.for %[[H:[a-z0-9_-]+]] = {{.+}} {
//       CHECK:         scf.for %[[QB:[a-z0-9_-]+]] = {{.+}} {
//       CHECK:           %[[LAST:[a-z0-9_-]+]] = arith.divui %{{.+}}, %c128
//       CHECK:           %[[END_RAW:[a-z0-9_-]+]] = arith.addi %[[LAST]], %c1
//       CHECK:           %[[END:[a-z0-9_-]+]] = arith.minui %[[END_RAW]], %[[KB_CAP]]
//       CHECK:           scf.for %[[KB:[a-z0-9_-]+]] = %c0 to %[[END]]
//       CHECK:             memref.load %[[MASK]][%[[B]], %[[H]], %[[QB]], %[[KB]]]
//       CHECK:             arith.ori
//       CHECK:             memref.store %{{.+}}, %[[FLAGS]][%[[KB]]]
// The chunk's blocks that the row's queries see are always in: from P / bs
// (one table per group: its first query is the chunk's first) up to
// last(Qb - 1), i.e. every block of the context here.
//       CHECK:       %[[CHUNK_END:[a-z0-9_-]+]] = arith.minui %{{.+}}, %[[NUM_BLOCKS]]
//       CHECK:       %[[FIRST:[a-z0-9_-]+]] = arith.divui %[[PREFIX]], %c128
//       CHECK:       scf.for %[[KB2:[a-z0-9_-]+]] = %[[FIRST]] to %[[CHUNK_END]]
//       CHECK:         memref.store %c1_i8, %[[FLAGS]][%[[KB2]]]
// Ascending table and count, then -1 padding.
//       CHECK:       %[[N:[a-z0-9_-]+]] = scf.for %[[KB3:[a-z0-9_-]+]] = %c0 to %[[KB_CAP]] {{.+}} iter_args(%[[CUR:[a-z0-9_-]+]] = %c0) -> (index)
//       CHECK:         scf.if
//       CHECK:           memref.store %{{.+}}, %[[TABLE]][%[[B]], %[[E]], %[[CUR]]]
//       CHECK:       %[[N_I32:[a-z0-9_-]+]] = arith.index_cast %[[N]] : index to i32
//       CHECK:       memref.store %[[N_I32]], %[[COUNTS]][%[[B]], %[[E]]]
//       CHECK:       scf.for %[[I:[a-z0-9_-]+]] = %[[N]] to %[[KB_CAP]]
//       CHECK:         memref.store %[[PAD]], %[[TABLE]][%[[B]], %[[E]], %[[I]]]
func.func @block_union(%mask: memref<?x16x?x?xi8>, %lens: memref<?xi32>, %c: index,
                       %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 4}
      : memref<?x16x?x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

// One table per query block (table rows given at run time): row r of
// T = rows / E rows per group (E = 16 heads / s = 1) serves group r / T and,
// when T != 1, query block r % T alone.
// CHECK-LABEL: func @block_union_per_query_block
//  CHECK-SAME:   (%[[MASK:[a-z0-9]+]]: memref<?x16x?x?xi8>, %{{.+}}: memref<?xi32>, %{{.+}}: index, %[[TABLE:[a-z0-9]+]]: memref<?x?x?xi32>, %[[COUNTS:[a-z0-9]+]]: memref<?x?xi32>)
//       CHECK:   %[[QBS:[a-z0-9_-]+]] = memref.dim %[[MASK]], %c2
//       CHECK:   %[[ROWS:[a-z0-9_-]+]] = memref.dim %[[TABLE]], %c1
//       CHECK:   %[[T_RAW:[a-z0-9_-]+]] = arith.divui %[[ROWS]], %c16
//       CHECK:   %[[T:[a-z0-9_-]+]] = arith.maxui %[[T_RAW]], %c1
//       CHECK:   %[[PER_QB:[a-z0-9_-]+]] = arith.cmpi ne, %[[T]], %c1
//       CHECK:     scf.for %[[ROW:[a-z0-9_-]+]] = %c0 to %[[ROWS]]
//       CHECK:       %[[E:[a-z0-9_-]+]] = arith.divui %[[ROW]], %[[T]]
//       CHECK:       %[[QB_OF_ROW:[a-z0-9_-]+]] = arith.remui %[[ROW]], %[[T]]
//       CHECK:       %[[QB_BEGIN:[a-z0-9_-]+]] = arith.select %[[PER_QB]], %[[QB_OF_ROW]], %c0
//       CHECK:       %[[QB_NEXT:[a-z0-9_-]+]] = arith.addi %[[QB_OF_ROW]], %c1
//       CHECK:       %[[QB_END:[a-z0-9_-]+]] = arith.select %[[PER_QB]], %[[QB_NEXT]], %[[QBS]]
//       CHECK:       scf.for %[[H:[a-z0-9_-]+]] = {{.+}} {
//       CHECK:         scf.for %[[QB:[a-z0-9_-]+]] = %[[QB_BEGIN]] to %[[QB_END]]
//       CHECK:           memref.load %[[MASK]][%{{.+}}, %[[H]], %[[QB]], %{{.+}}]
//       CHECK:       memref.store %{{.+}}, %[[COUNTS]][%{{.+}}, %[[ROW]]]
func.func @block_union_per_query_block(%mask: memref<?x16x?x?xi8>, %lens: memref<?xi32>,
                                       %c: index, %table: memref<?x?x?xi32>,
                                       %counts: memref<?x?xi32>) {
  compact.block_union %mask, %lens, %c into %table, %counts
      {block_size = 128, kv_heads = 4, exec_group_size = 1}
      : memref<?x16x?x?xi8>, memref<?xi32> into memref<?x?x?xi32>, memref<?x?xi32>
  return
}

// -----

// Thresholds: row max over the causally valid blocks, bound = max + ln(alpha),
// keep if above it (and finite), or a sink block, or in the window.
// CHECK-LABEL: func @select_blocks
//   CHECK-DAG:   %[[LN_ALPHA:[a-z0-9_-]+]] = arith.constant -2.81341076 : f32
//   CHECK-DAG:   %[[NEG_INF:[a-z0-9_-]+]] = arith.constant 0xFF800000 : f32
//       CHECK:   %[[ROW_MAX:[a-z0-9_-]+]] = scf.for {{.+}} -> (f32)
//       CHECK:     arith.maxnumf
//       CHECK:   %[[BOUND:[a-z0-9_-]+]] = arith.addf %[[ROW_MAX]], %[[LN_ALPHA]]
//       CHECK:   scf.for %[[KB:[a-z0-9_-]+]] = {{.+}} {
//       CHECK:     %[[FINITE:[a-z0-9_-]+]] = arith.cmpf une, %[[SCORE:[a-z0-9_-]+]], %[[NEG_INF]]
//       CHECK:     %[[ABOVE:[a-z0-9_-]+]] = arith.cmpf oge, %[[SCORE]], %[[BOUND]]
//       CHECK:     %[[PASSES:[a-z0-9_-]+]] = arith.andi %[[ABOVE]], %[[FINITE]]
//       CHECK:     %[[SINK:[a-z0-9_-]+]] = arith.cmpi ult, %[[KB]], %c2
//       CHECK:     %[[SHIFTED:[a-z0-9_-]+]] = arith.addi %[[KB]], %c4
//       CHECK:     %[[WINDOW:[a-z0-9_-]+]] = arith.cmpi ugt, %[[SHIFTED]], %{{.+}}
//       CHECK:     %[[EITHER:[a-z0-9_-]+]] = arith.ori %[[SINK]], %[[WINDOW]]
//       CHECK:     %[[KEEP:[a-z0-9_-]+]] = arith.ori %[[PASSES]], %[[EITHER]]
//       CHECK:     arith.extui %[[KEEP]] : i1 to i8
// Causally invalid pairs and padding are 0.
//       CHECK:   scf.for
//       CHECK:     memref.store %c0_i8
func.func @select_blocks(%scores: memref<?x16x?x?xf32>, %lens: memref<?xi32>, %c: index,
                         %mask: memref<?x16x?x?xi8>) {
  compact.select_blocks %scores, %lens, %c into %mask
      {block_size = 128, mode = #compact.threshold<rowmax_log>, threshold = 0.06 : f32,
       sink = 2, window = 4}
      : memref<?x16x?x?xf32>, memref<?xi32> into memref<?x16x?x?xi8>
  return
}

// -----

// FlashPrefill scores: fp64 log-sum-exp of the valid rows' logits, two passes.
// CHECK-LABEL: func @block_scores
//       CHECK:   %[[MAX:[a-z0-9_-]+]] = scf.for {{.+}} -> (f64)
//       CHECK:     scf.for {{.+}} -> (f64)
//       CHECK:       arith.extf %{{.+}} : bf16 to f64
//       CHECK:     arith.maximumf
//       CHECK:   %[[SUM:[a-z0-9_-]+]] = scf.for {{.+}} -> (f64)
//       CHECK:     arith.subf %{{.+}}, %[[MAX]] : f64
//       CHECK:     math.exp
//       CHECK:   %[[LOG:[a-z0-9_-]+]] = math.log %[[SUM]] : f64
//       CHECK:   %[[LSE:[a-z0-9_-]+]] = arith.addf %[[MAX]], %[[LOG]] : f64
//       CHECK:   %[[LSE32:[a-z0-9_-]+]] = arith.truncf %[[LSE]] : f64 to f32
//       CHECK:   memref.store %[[LSE32]]
func.func @block_scores(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
                        %lens: memref<?xi32>, %scores: memref<?x16x?x?xf32>) {
  compact.block_scores %q, %pooled, %lens into %scores {block_size = 128}
      : memref<?x?x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32> into memref<?x16x?x?xf32>
  return
}

// -----

// The fused op never touches a mask or a score buffer of the caller: one row
// of scores lives in a scratch buffer.
// CHECK-LABEL: func @score_select_union
//       CHECK:   %[[ROW:[a-z0-9_-]+]] = memref.alloca(%{{.+}}) : memref<?xf32>
//       CHECK:   %[[FLAGS:[a-z0-9_-]+]] = memref.alloca(%{{.+}}) : memref<?xi8>
//       CHECK:   memref.store %{{.+}}, %[[ROW]]
//       CHECK:   memref.load %[[ROW]]
//       CHECK:   memref.store %{{.+}}, %[[FLAGS]]
//   CHECK-NOT:   memref.alloc(
func.func @score_select_union(%q: memref<?x?x16x128xbf16>, %pooled: memref<?x4x?x128xf32>,
                              %lens: memref<?xi32>, %table: memref<?x4x?xi32>,
                              %counts: memref<?x4xi32>) {
  compact.score_select_union %q, %pooled, %lens into %table, %counts
      {block_size = 128, exec_group_size = 4, mode = #compact.threshold<rowmax_log>,
       threshold = 0.06 : f32, sink = 2, window = 4}
      : memref<?x?x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32>
        into memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

// Pooling visits only the blocks the chunk touched: [P / bs, ceil(L / bs)).
// CHECK-LABEL: func @pool_keys
//       CHECK:   %[[PREFIX:[a-z0-9_-]+]] = arith.subi
//       CHECK:   %[[NUM_BLOCKS:[a-z0-9_-]+]] = arith.ceildivui %{{.+}}, %c128
//       CHECK:   %[[FIRST:[a-z0-9_-]+]] = arith.divui %[[PREFIX]], %c128
//       CHECK:   scf.for %{{.+}} = %[[FIRST]] to %[[NUM_BLOCKS]]
//       CHECK:     arith.uitofp
//       CHECK:     scf.for {{.+}} -> (f64)
//       CHECK:     arith.divf %{{.+}} : f64
func.func @pool_keys(%kc: memref<?x64x4x128xbf16>, %pt: memref<?x?xi32>,
                     %lens: memref<?xi32>, %c: index, %pooled: memref<?x4x?x128xf32>) {
  compact.pool_keys %kc, %pt, %lens, %c into %pooled {block_size = 128}
      : memref<?x64x4x128xbf16>, memref<?x?xi32>, memref<?xi32> into memref<?x4x?x128xf32>
  return
}

// -----

// Append: token P + t goes to page page_table[b][(P + t) / PS], slot (P + t) % PS.
// CHECK-LABEL: func @append_kv
//  CHECK-SAME:   (%[[K:[a-z0-9]+]]: memref<?x?x4x128xbf16>, %[[V:[a-z0-9]+]]: memref<?x?x4x128xbf16>, %[[PT:[a-z0-9]+]]: memref<?x?xi32>, %[[LENS:[a-z0-9]+]]: memref<?xi32>, %[[KC:[a-z0-9]+]]: memref<?x64x4x128xbf16>, %[[VC:[a-z0-9]+]]: memref<?x64x4x128xbf16>)
//       CHECK:   %[[POS:[a-z0-9_-]+]] = arith.addi
//       CHECK:   %[[PAGE_IDX:[a-z0-9_-]+]] = arith.divui %[[POS]], %c64
//       CHECK:   %[[PAGE_I32:[a-z0-9_-]+]] = memref.load %[[PT]][%{{.+}}, %[[PAGE_IDX]]]
//       CHECK:   %[[PAGE:[a-z0-9_-]+]] = arith.index_cast %[[PAGE_I32]]
//       CHECK:   %[[SLOT:[a-z0-9_-]+]] = arith.remui %[[POS]], %c64
//       CHECK:   memref.store %{{.+}}, %[[KC]][%[[PAGE]], %[[SLOT]],
//       CHECK:   memref.store %{{.+}}, %[[VC]][%[[PAGE]], %[[SLOT]],
func.func @append_kv(%k: memref<?x?x4x128xbf16>, %v: memref<?x?x4x128xbf16>,
                     %pt: memref<?x?xi32>, %lens: memref<?xi32>,
                     %kc: memref<?x64x4x128xbf16>, %vc: memref<?x64x4x128xbf16>) {
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc
      : memref<?x?x4x128xbf16>, memref<?x?x4x128xbf16>, memref<?x?xi32>, memref<?xi32>
        into memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>
  return
}

// -----

// Dense tables: every block of the context, then -1.
// CHECK-LABEL: func @dense_table
//       CHECK:   %[[NUM_BLOCKS:[a-z0-9_-]+]] = arith.ceildivui %{{.+}}, %c128
//       CHECK:   scf.for %[[E:[a-z0-9_-]+]] = %c0 to %c4
//       CHECK:     memref.store %{{.+}}, %{{.+}}[%{{.+}}, %[[E]]]
//       CHECK:     scf.for %[[KB:[a-z0-9_-]+]] =
//       CHECK:     %[[IN:[a-z0-9_-]+]] = arith.cmpi ult, %[[KB]], %[[NUM_BLOCKS]]
//       CHECK:     arith.select %[[IN]], %{{.+}}, %c-1_i32
func.func @dense_table(%lens: memref<?xi32>, %table: memref<?x4x?xi32>, %counts: memref<?x4xi32>) {
  compact.dense_table %lens into %table, %counts {block_size = 128}
      : memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
  return
}

// -----

// The execution-group cost model: per (sequence, KV group, row index t) the
// union size of each head (s = 1) and of each sub-group (s = 2 = G), the
// largest s within (1 + slack) of the per-head cost, then the chosen
// sub-groups' unions written over the heads' rows.
// CHECK-LABEL: func @choose_exec_groups
//  CHECK-SAME:   (%[[TABLE:[a-z0-9]+]]: memref<?x?x?xi32>, %[[COUNTS:[a-z0-9]+]]: memref<?x?xi32>)
//   CHECK-DAG:   %[[BUDGET:[a-z0-9_-]+]] = arith.constant 1.500000e+00 : f32
//   CHECK-DAG:   %[[KB_CAP:[a-z0-9_-]+]] = memref.dim %[[TABLE]], %c2
//   CHECK-DAG:   %[[ROWS:[a-z0-9_-]+]] = memref.dim %[[TABLE]], %c1
//       CHECK:   %[[T:[a-z0-9_-]+]] = arith.divui %[[ROWS]], %c8
//       CHECK:   %[[FLAGS:[a-z0-9_-]+]] = memref.alloca(%[[KB_CAP]]) : memref<?xi8>
//       CHECK:   scf.for %[[B:[a-z0-9_-]+]] =
//       CHECK:     scf.for %[[KV:[a-z0-9_-]+]] = %c0 to %c4
//       CHECK:       scf.for %[[ROW_T:[a-z0-9_-]+]] = %c0 to %[[T]]
//       CHECK:         %[[FIRST:[a-z0-9_-]+]] = arith.muli %[[KV]], %c2
// cost(1): each head's row alone; negative counts read nothing, entries
// outside [0, Kb) are skipped.
//       CHECK:         %[[COST1:[a-z0-9_-]+]] = scf.for {{.+}} = %c0 to %c2 {{.+}} -> (index)
//       CHECK:           arith.maxsi %{{.+}}, %c0_i32 : i32
//       CHECK:           arith.cmpi ult, %{{.+}}, %[[KB_CAP]] : index
//       CHECK:         %[[COST1_F:[a-z0-9_-]+]] = arith.uitofp %{{.+}} : i32 to f32
//       CHECK:         %[[LIMIT:[a-z0-9_-]+]] = arith.mulf %[[COST1_F]], %[[BUDGET]] : f32
// cost(2): the pair's union, twice.
//       CHECK:         %[[UNION:[a-z0-9_-]+]] = scf.for {{.+}} iter_args
//       CHECK:         %[[COST2:[a-z0-9_-]+]] = arith.muli %[[UNION]], %c2
//       CHECK:         %[[COST2_F:[a-z0-9_-]+]] = arith.uitofp %{{.+}} : i32 to f32
//       CHECK:         %[[FITS:[a-z0-9_-]+]] = arith.cmpf ole, %[[COST2_F]], %[[LIMIT]] : f32
//       CHECK:         %[[S:[a-z0-9_-]+]] = arith.select %[[FITS]], %c2, %c1 : index
//       CHECK:         %[[WIDER:[a-z0-9_-]+]] = arith.cmpi ugt, %[[S]], %c1 : index
//       CHECK:         scf.if %[[WIDER]] {
//       CHECK:           scf.for %[[SUB:[a-z0-9_-]+]] = %[[FIRST]] to %{{.+}} step %[[S]] {
//       CHECK:             memref.store %c1_i8, %[[FLAGS]]
//       CHECK:             scf.for %[[H:[a-z0-9_-]+]] = %[[SUB]] to
//       CHECK:               memref.store %{{.+}}, %[[TABLE]][%[[B]], %{{.+}}, %{{.+}}] : memref<?x?x?xi32>
//       CHECK:               memref.store %{{.+}}, %[[COUNTS]][%[[B]], %{{.+}}] : memref<?x?xi32>
//       CHECK:               memref.store %c-1_i32, %[[TABLE]]
func.func @choose_exec_groups(%table: memref<?x?x?xi32>, %counts: memref<?x?xi32>) {
  compact.choose_exec_groups %table, %counts {q_heads = 8, kv_heads = 4, slack = 0.5 : f32}
      : memref<?x?x?xi32>, memref<?x?xi32>
  return
}
