//===- CompactDialect.td - the compact dialect -------------*- tablegen -*-===//
//
// The `compact` dialect: KV selection, block union and paged attention for
// chunked prefill (CompactAttention, Song, Jo, Kang, Kim, 2026).
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_DIALECT_COMPACT_IR_COMPACTDIALECT_TD
#define COMPACT_DIALECT_COMPACT_IR_COMPACTDIALECT_TD

include "mlir/IR/OpBase.td"

def Compact_Dialect : Dialect {
  let name = "compact";
  let cppNamespace = "::mlir::compact";
  let summary = "KV selection, block union and paged attention for chunked prefill";
  let description = [{
    The `compact` dialect expresses the CompactAttention method for chunked
    prefill. A chunk of `C` query tokens of each of `B` sequences attends to
    the sequence's paged KV cache of `L_b` tokens (the chunk's own tokens are
    the last `C` of them), causally within the chunk (bottom-right aligned).

    The method in ops:

    1. a selector produces a 2D block mask `[B, Hq, Qb, Kb]` per query head
       (`compact.block_scores` + `compact.select_blocks`, or a mask given by
       the user);
    2. `compact.block_union` takes the union of the mask over the chunk's
       query blocks and over the query heads of an execution group and writes
       one ascending KV block table per group;
    3. `compact.paged_attention` runs dense attention of every group's query
       rows over the pages its table names, reading the KV cache in place.

    `compact.select_union` and `compact.score_select_union` are the fused
    forms that `compact-fuse-selection` produces so the 2D mask (and the
    scores) never reach memory.

    All ops have buffer semantics: they read and write memrefs, the way the
    runtime hands buffers to the generated kernels. Head counts, head dim and
    page size are static (generated code is specialised on them); batch,
    chunk length, context lengths and capacities are dynamic.
  }];
  let useDefaultAttributePrinterParser = 1;
}

#endif // COMPACT_DIALECT_COMPACT_IR_COMPACTDIALECT_TD
