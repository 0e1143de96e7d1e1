//===- CompactOps.td - compact dialect operations ----------*- tablegen -*-===//
//
// Shapes used throughout (B: sequences, C: chunk length, Hq / Hkv: query / KV
// heads, G = Hq / Hkv, D: head dim, PS: page size, bs: selection block size,
// Qb = ceil(C / bs): query blocks of the chunk, Kb: KV block capacity,
// s: execution group size, E = Hq / s: execution groups per sequence).
//
// Sequence b holds L_b = ctx_lens[b] tokens *after* the chunk, so the chunk is
// tokens [P_b, L_b) with P_b = L_b - C. Query row t of the chunk sits at
// position P_b + t and sees positions <= P_b + t (bottom-right causal). KV
// block kb is tokens [kb * bs, min((kb + 1) * bs, L_b)). Query block qb is
// chunk rows [qb * bs, min((qb + 1) * bs, C)); its last visible KV block is
// last(qb) = (P_b + min((qb + 1) * bs, C) - 1) / bs, and the pair (qb, kb) is
// causally valid iff kb <= last(qb). The chunk's own blocks are
// [P_b / bs, ceil(L_b / bs)).
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_DIALECT_COMPACT_IR_COMPACTOPS_TD
#define COMPACT_DIALECT_COMPACT_IR_COMPACTOPS_TD

include "compact/Dialect/Compact/IR/CompactAttrs.td"
include "mlir/IR/OpBase.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

class Compact_Op<string mnemonic, list<Trait> traits = []>
    : Op<Compact_Dialect, mnemonic, traits>;

//===----------------------------------------------------------------------===//
// Operand and attribute constraints
//===----------------------------------------------------------------------===//

def Compact_DataMemRef : MemRefRankOf<[BF16, F16, F32], [4]>;
def Compact_PooledMemRef : MemRefRankOf<[F32, BF16, F16], [4]>;
def Compact_ScoreMemRef : MemRefRankOf<[F32], [4]>;
def Compact_MaskMemRef : MemRefRankOf<[I8], [4]>;
def Compact_LseMemRef : MemRefRankOf<[F32], [3]>;
def Compact_PartialOutMemRef : MemRefRankOf<[F32], [5]>;
def Compact_PartialLseMemRef : MemRefRankOf<[F32], [4]>;
def Compact_I32MemRef1D : MemRefRankOf<[I32], [1]>;
def Compact_I32MemRef2D : MemRefRankOf<[I32], [2]>;
def Compact_I32MemRef3D : MemRefRankOf<[I32], [3]>;

def Compact_PositiveI64Attr : ConfinedAttr<I64Attr, [IntPositive]>;
def Compact_NonNegativeI64Attr : ConfinedAttr<I64Attr, [IntNonNegative]>;

// Selection parameters shared by select_blocks and the fused selection ops.
defvar SelectionParams = (ins
  Compact_ThresholdModeAttr:$mode,
  F32Attr:$threshold,
  DefaultValuedAttr<Compact_NonNegativeI64Attr, "0">:$sink,
  DefaultValuedAttr<Compact_NonNegativeI64Attr, "0">:$window);

//===----------------------------------------------------------------------===//
// compact.append_kv
//===----------------------------------------------------------------------===//

def Compact_AppendKVOp : Compact_Op<"append_kv"> {
  let summary = "write the chunk's keys and values into the paged KV cache";
  let description = [{
    Writes `k_new[b, t]` and `v_new[b, t]` (`[B, C, Hkv, D]`) to position
    `P_b + t` of sequence `b` in `k_cache` / `v_cache`, i.e. to page
    `page_table[b][(P_b + t) / PS]`, slot `(P_b + t) % PS`. `ctx_lens` holds
    the lengths *after* the append. Nothing outside the chunk's slots is
    written.

    Example:

    ```mlir
    compact.append_kv %k, %v, %page_table, %ctx_lens into %k_cache, %v_cache
        {layout = #compact.layout<nhd>}
        : memref<?x?x4x128xbf16>, memref<?x?x4x128xbf16>, memref<?x?xi32>,
          memref<?xi32> into memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>
    ```
  }];
  let arguments = (ins
    Arg<Compact_DataMemRef, "new keys [B, C, Hkv, D]", [MemRead]>:$k_new,
    Arg<Compact_DataMemRef, "new values [B, C, Hkv, D]", [MemRead]>:$v_new,
    Arg<Compact_I32MemRef2D, "page table [B, max_pages]", [MemRead]>:$page_table,
    Arg<Compact_I32MemRef1D, "context lengths after the chunk [B]", [MemRead]>:$ctx_lens,
    Arg<Compact_DataMemRef, "key cache", [MemRead, MemWrite]>:$k_cache,
    Arg<Compact_DataMemRef, "value cache", [MemRead, MemWrite]>:$v_cache,
    DefaultValuedAttr<Compact_KVLayoutAttr, "::mlir::compact::KVLayout::NHD">:$layout);
  let assemblyFormat = [{
    $k_new `,` $v_new `,` $page_table `,` $ctx_lens `into` $k_cache `,` $v_cache
    attr-dict `:` type($k_new) `,` type($v_new) `,` type($page_table) `,`
    type($ctx_lens) `into` type($k_cache) `,` type($v_cache)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// compact.pool_keys
//===----------------------------------------------------------------------===//

def Compact_PoolKeysOp : Compact_Op<"pool_keys"> {
  let summary = "extend the per-sequence cache of mean-pooled key blocks";
  let description = [{
    For each sequence `b`, KV head `h` and each KV block `kb` that the chunk
    touched (`P_b / bs <= kb < ceil(L_b / bs)`), writes the mean of the keys of
    the block's valid tokens (`[kb * bs, min((kb + 1) * bs, L_b))`) to
    `pooled[b, h, kb]`. Earlier blocks keep the values earlier chunks wrote, so
    each chunk costs O(C), not O(L); later blocks are not touched.

    Example:

    ```mlir
    compact.pool_keys %k_cache, %page_table, %ctx_lens, %chunk_len into %pooled
        {block_size = 128 : i64, layout = #compact.layout<nhd>}
        : memref<?x64x4x128xbf16>, memref<?x?xi32>, memref<?xi32>
          into memref<?x4x?x128xf32>
    ```
  }];
  let arguments = (ins
    Arg<Compact_DataMemRef, "key cache", [MemRead]>:$k_cache,
    Arg<Compact_I32MemRef2D, "page table [B, max_pages]", [MemRead]>:$page_table,
    Arg<Compact_I32MemRef1D, "context lengths after the chunk [B]", [MemRead]>:$ctx_lens,
    Index:$chunk_len,
    Arg<Compact_PooledMemRef, "pooled keys [B, Hkv, Kb, D]", [MemRead, MemWrite]>:$pooled,
    Compact_PositiveI64Attr:$block_size,
    DefaultValuedAttr<Compact_KVLayoutAttr, "::mlir::compact::KVLayout::NHD">:$layout);
  let assemblyFormat = [{
    $k_cache `,` $page_table `,` $ctx_lens `,` $chunk_len `into` $pooled
    attr-dict `:` type($k_cache) `,` type($page_table) `,` type($ctx_lens)
    `into` type($pooled)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// compact.block_scores
//===----------------------------------------------------------------------===//

def Compact_BlockScoresOp : Compact_Op<"block_scores"> {
  let summary = "FlashPrefill block scores of the chunk's queries";
  let description = [{
    Scores every (query block, KV block) pair of every query head against the
    mean-pooled keys, FlashPrefill style. With `s(i, kb) = scale * q_i .
    pooled[b, h / G, kb]` for query row `i` of the chunk:

    ```
    scores[b, h, qb, kb] = log sum_{i in qb, valid(i, kb)} exp(s(i, kb))
    ```

    where `valid(i, kb)` holds iff block `kb` ends at or before the query
    (`P_b + i >= (kb + 1) * bs - 1`): a query only scores blocks it sees
    whole. A pair with no valid query, and every `kb >= ceil(L_b / bs)`,
    gets `-inf`. In FlashPrefill's terms this is the log of the block's
    softmax mass within the row, up to the row's normaliser, so
    `compact.select_blocks` with `mode = rowmax_log` applies FlashPrefill's
    `mass >= alpha * max mass` rule. `scale` defaults to `1 / sqrt(D)`.

    Example:

    ```mlir
    compact.block_scores %q, %pooled, %ctx_lens into %scores {block_size = 128 : i64}
        : memref<?x1024x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32>
          into memref<?x16x8x?xf32>
    ```
  }];
  let arguments = (ins
    Arg<Compact_DataMemRef, "chunk queries [B, C, Hq, D]", [MemRead]>:$q,
    Arg<Compact_PooledMemRef, "pooled keys [B, Hkv, Kb, D]", [MemRead]>:$pooled,
    Arg<Compact_I32MemRef1D, "context lengths after the chunk [B]", [MemRead]>:$ctx_lens,
    Arg<Compact_ScoreMemRef, "block scores [B, Hq, Qb, Kb]", [MemWrite]>:$scores,
    Compact_PositiveI64Attr:$block_size,
    OptionalAttr<F32Attr>:$scale);
  let assemblyFormat = [{
    $q `,` $pooled `,` $ctx_lens `into` $scores attr-dict `:` type($q) `,`
    type($pooled) `,` type($ctx_lens) `into` type($scores)
  }];
  let extraClassDeclaration = [{
    /// The softmax scale: the attribute, or 1 / sqrt(head dim).
    float getEffectiveScale();
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// compact.select_blocks
//===----------------------------------------------------------------------===//

def Compact_SelectBlocksOp : Compact_Op<"select_blocks"> {
  let summary = "threshold block scores into a 2D block mask";
  let description = [{
    Writes `mask[b, h, qb, kb] = 1` for causally valid pairs (`kb <= last(qb)`,
    `qb < Qb`) that pass the threshold (see `#compact.threshold`; the row max
    is over the row's causally valid blocks), are one of the `sink` first
    blocks (`kb < sink`), or are one of the `window` most recent blocks the
    query block sees (`last(qb) - window < kb`); every other element of the
    mask, including padding beyond `ceil(L_b / bs)`, is 0. A score of `-inf`
    (a pair no query could score) never passes the threshold. The scores may come
    from `compact.block_scores` or from a learned gate (SeerAttention-style).

    Example:

    ```mlir
    compact.select_blocks %scores, %ctx_lens, %chunk_len into %mask
        {block_size = 128 : i64, mode = #compact.threshold<rowmax_log>,
         threshold = 6.000000e-02 : f32, sink = 2 : i64, window = 4 : i64}
        : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x16x8x?xi8>
    ```
  }];
  let arguments = !con((ins
    Arg<Compact_ScoreMemRef, "block scores [B, Hq, Qb, Kb]", [MemRead]>:$scores,
    Arg<Compact_I32MemRef1D, "context lengths after the chunk [B]", [MemRead]>:$ctx_lens,
    Index:$chunk_len,
    Arg<Compact_MaskMemRef, "block mask [B, Hq, Qb, Kb]", [MemWrite]>:$mask,
    Compact_PositiveI64Attr:$block_size), SelectionParams);
  let assemblyFormat = [{
    $scores `,` $ctx_lens `,` $chunk_len `into` $mask attr-dict `:`
    type($scores) `,` type($ctx_lens) `into` type($mask)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// compact.block_union
//===----------------------------------------------------------------------===//

def Compact_BlockUnionOp : Compact_Op<"block_union"> {
  let summary = "union a 2D block mask into one KV block table per execution group";
  let description = [{
    Execution group `e` of sequence `b` is query heads `[e * s, (e + 1) * s)`,
    which share KV head `e * s / G` (`s` divides `G`; `s = G` is the paper's
    group union, `s = 1` per-head tables). The table has `T` rows per group,
    `T = (table dim 1) / E` with `E = Hq / s`:

    * `T = 1`: row `e` serves every query block of the chunk (the union over
      query blocks, the paper's table);
    * `T = Qb`: row `e * Qb + qb` serves query block `qb` alone (the union
      over the group's heads only; with `s = 1` it is the mask row itself
      plus the query block's diagonal).

    A row serving the query blocks `Q` (first `q0`) holds the ascending list
    of the KV blocks `kb < ceil(L_b / bs)` with

    ```
    (OR_{h in e, qb in Q, kb <= last(qb)} mask[b, h, qb, kb] != 0)
        OR  (P_b + q0 * bs) / bs <= kb <= max_{qb in Q} last(qb)
    ```

    (the chunk blocks from the one holding the row's first query to the last
    one its queries see are always in: with `T = 1` every block of the chunk,
    the method's rule; with `T = Qb` the query block's diagonal, so that every
    query sees its own position and the table adds nothing to a mask that
    holds the diagonal, as a `window >= 2` selection does), written to
    `table[b, row, 0 .. count)`, the count to `counts[b, row]`, and `-1` to
    the rest of the row. Pairs that are not causally valid do not count,
    whatever the mask holds. This is the smallest table that keeps every
    block any query row it serves selected.

    Example:

    ```mlir
    compact.block_union %mask, %ctx_lens, %chunk_len into %table, %counts
        {block_size = 128 : i64, kv_heads = 4 : i64, exec_group_size = 4 : i64}
        : memref<?x16x8x?xi8>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
    ```
  }];
  let arguments = (ins
    Arg<Compact_MaskMemRef, "block mask [B, Hq, Qb, Kb]", [MemRead]>:$mask,
    Arg<Compact_I32MemRef1D, "context lengths after the chunk [B]", [MemRead]>:$ctx_lens,
    Index:$chunk_len,
    Arg<Compact_I32MemRef3D, "block tables [B, E * T, Kb]", [MemWrite]>:$table,
    Arg<Compact_I32MemRef2D, "block counts [B, E * T]", [MemWrite]>:$counts,
    Compact_PositiveI64Attr:$block_size,
    Compact_PositiveI64Attr:$kv_heads,
    Compact_PositiveI64Attr:$exec_group_size);
  let assemblyFormat = [{
    $mask `,` $ctx_lens `,` $chunk_len `into` $table `,` $counts attr-dict `:`
    type($mask) `,` type($ctx_lens) `into` type($table) `,` type($counts)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// compact.select_union (fused select_blocks + block_union)
//===----------------------------------------------------------------------===//

def Compact_SelectUnionOp : Compact_Op<"select_union"> {
  let summary = "threshold block scores straight into block tables";
  let description = [{
    `compact.select_blocks` followed by `compact.block_union`, without the
    mask: the union is taken while the scores are thresholded. The result is
    the same table and count as the two ops give. `compact-fuse-selection`
    forms it when the mask is a temporary buffer.

    Example:

    ```mlir
    compact.select_union %scores, %ctx_lens, %chunk_len into %table, %counts
        {block_size = 128 : i64, kv_heads = 4 : i64, exec_group_size = 4 : i64,
         mode = #compact.threshold<rowmax_log>, threshold = 6.000000e-02 : f32,
         sink = 2 : i64, window = 4 : i64}
        : memref<?x16x8x?xf32>, memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
    ```
  }];
  let arguments = !con((ins
    Arg<Compact_ScoreMemRef, "block scores [B, Hq, Qb, Kb]", [MemRead]>:$scores,
    Arg<Compact_I32MemRef1D, "context lengths after the chunk [B]", [MemRead]>:$ctx_lens,
    Index:$chunk_len,
    Arg<Compact_I32MemRef3D, "block tables [B, E * T, Kb]", [MemWrite]>:$table,
    Arg<Compact_I32MemRef2D, "block counts [B, E * T]", [MemWrite]>:$counts,
    Compact_PositiveI64Attr:$block_size,
    Compact_PositiveI64Attr:$kv_heads,
    Compact_PositiveI64Attr:$exec_group_size), SelectionParams);
  let assemblyFormat = [{
    $scores `,` $ctx_lens `,` $chunk_len `into` $table `,` $counts attr-dict `:`
    type($scores) `,` type($ctx_lens) `into` type($table) `,` type($counts)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// compact.score_select_union (fused block_scores + select_blocks + block_union)
//===----------------------------------------------------------------------===//

def Compact_ScoreSelectUnionOp : Compact_Op<"score_select_union"> {
  let summary = "FlashPrefill selection straight into block tables";
  let description = [{
    `compact.block_scores`, `compact.select_blocks` and `compact.block_union`
    in one op: neither the scores nor the 2D mask reach memory. The chunk
    length is `q`'s dim 1. `compact-fuse-selection` forms it when the scores
    and the mask are temporary buffers.

    Example:

    ```mlir
    compact.score_select_union %q, %pooled, %ctx_lens into %table, %counts
        {block_size = 128 : i64, exec_group_size = 4 : i64,
         mode = #compact.threshold<rowmax_log>, threshold = 6.000000e-02 : f32,
         sink = 2 : i64, window = 4 : i64}
        : memref<?x1024x16x128xbf16>, memref<?x4x?x128xf32>, memref<?xi32>
          into memref<?x4x?xi32>, memref<?x4xi32>
    ```
  }];
  let arguments = !con((ins
    Arg<Compact_DataMemRef, "chunk queries [B, C, Hq, D]", [MemRead]>:$q,
    Arg<Compact_PooledMemRef, "pooled keys [B, Hkv, Kb, D]", [MemRead]>:$pooled,
    Arg<Compact_I32MemRef1D, "context lengths after the chunk [B]", [MemRead]>:$ctx_lens,
    Arg<Compact_I32MemRef3D, "block tables [B, E * T, Kb]", [MemWrite]>:$table,
    Arg<Compact_I32MemRef2D, "block counts [B, E * T]", [MemWrite]>:$counts,
    Compact_PositiveI64Attr:$block_size,
    OptionalAttr<F32Attr>:$scale,
    Compact_PositiveI64Attr:$exec_group_size), SelectionParams);
  let assemblyFormat = [{
    $q `,` $pooled `,` $ctx_lens `into` $table `,` $counts attr-dict `:`
    type($q) `,` type($pooled) `,` type($ctx_lens) `into` type($table) `,`
    type($counts)
  }];
  let extraClassDeclaration = [{
    /// The softmax scale: the attribute, or 1 / sqrt(head dim).
    float getEffectiveScale();
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// compact.choose_exec_groups
//===----------------------------------------------------------------------===//

def Compact_ChooseExecGroupsOp : Compact_Op<"choose_exec_groups"> {
  let summary = "choose the execution group size per KV group and table row";
  let description = [{
    The cost model of the execution group size `s`, run where the tables are
    (no host synchronisation). It takes per-head tables (`s = 1`, as
    `compact.block_union` writes them: row `h * T + t` of head `h`, `T = 1`
    or `Qb`) and, for every sequence `b`, KV head `g` (query heads
    `[g * G, (g + 1) * G)`, `G = q_heads / kv_heads`) and row index `t`,
    considers every `s'` dividing `G`: the group's heads in sub-groups of
    `s'` consecutive heads, each head walking its sub-group's union. The
    attention kernel's time is the query rows times the KV blocks they walk,
    and every head's row serves the same query rows, so the predicted cost is

    ```
    cost(s') = sum over sub-groups J of s' * |union_{h in J} row(h)|
    ```

    `cost(1)` is the per-head tables' (the least: each row is a subset of
    its sub-group's union); a larger `s'` adds blocks, i.e. fidelity (the
    group union's output is closer to dense attention), at the price of
    work. The op picks the largest `s'` with
    `cost(s') <= (1 + slack) * cost(1)` and writes each head's row as its
    sub-group's union (ascending, count, `-1` padding); with `s' = 1` the
    rows are left as they are. `slack = 0` keeps the time-optimal per-head
    tables (a union is chosen only where it is free: heads that selected the
    same blocks); a large slack gives the paper's group union (`s' = G`)
    wherever it is affordable. A row's count is clamped to `[0, Kb]`; entries
    outside `[0, Kb)` are ignored and duplicates count once. Table rows that
    are not `Hq * T` for a whole `T` (dynamic shapes) are not touched past
    `Hq * floor(rows / Hq)`.

    Example:

    ```mlir
    compact.choose_exec_groups %table, %counts
        {q_heads = 16 : i64, kv_heads = 4 : i64, slack = 5.000000e-01 : f32}
        : memref<?x?x?xi32>, memref<?x?xi32>
    ```
  }];
  let arguments = (ins
    Arg<Compact_I32MemRef3D, "per-head block tables [B, Hq * T, Kb]", [MemRead, MemWrite]>:$table,
    Arg<Compact_I32MemRef2D, "block counts [B, Hq * T]", [MemRead, MemWrite]>:$counts,
    Compact_PositiveI64Attr:$q_heads,
    Compact_PositiveI64Attr:$kv_heads,
    DefaultValuedAttr<F32Attr, "0.0f">:$slack);
  let assemblyFormat = [{
    $table `,` $counts attr-dict `:` type($table) `,` type($counts)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// compact.dense_table
//===----------------------------------------------------------------------===//

def Compact_DenseTableOp : Compact_Op<"dense_table"> {
  let summary = "block tables that hold every block of the context";
  let description = [{
    Writes `table[b, r] = [0, 1, .., ceil(L_b / bs) - 1, -1, ..]` and
    `counts[b, r] = ceil(L_b / bs)` for every table row `r` (of any of the
    layouts of `compact.block_union`): with these
    tables `compact.paged_attention` is dense causal attention (the first
    chunk of a prompt, and chunks whose union is too dense to pay).

    Example:

    ```mlir
    compact.dense_table %ctx_lens into %table, %counts {block_size = 128 : i64}
        : memref<?xi32> into memref<?x4x?xi32>, memref<?x4xi32>
    ```
  }];
  let arguments = (ins
    Arg<Compact_I32MemRef1D, "context lengths after the chunk [B]", [MemRead]>:$ctx_lens,
    Arg<Compact_I32MemRef3D, "block tables [B, E * T, Kb]", [MemWrite]>:$table,
    Arg<Compact_I32MemRef2D, "block counts [B, E * T]", [MemWrite]>:$counts,
    Compact_PositiveI64Attr:$block_size);
  let assemblyFormat = [{
    $ctx_lens `into` $table `,` $counts attr-dict `:` type($ctx_lens) `into`
    type($table) `,` type($counts)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// compact.paged_attention
//===----------------------------------------------------------------------===//

def Compact_PagedAttentionOp : Compact_Op<"paged_attention", [AttrSizedOperandSegments]> {
  let summary = "dense attention of each execution group over its block table";
  let description = [{
    For query row `t` of head `h` of sequence `b` (position `p = P_b + t`,
    execution group `e = h / s`), the keys are the tokens `j <= p` of the
    blocks `block_table[b, r, 0 .. block_counts[b, r])` of its table row `r`,
    read in
    place: token `j` lives in page `page_table[b][j / PS]`, slot `j % PS`, KV
    head `h / G`. Then

    ```
    out[b, t, h] = softmax_j(scale * q[b, t, h] . k_j) . v_j
    lse[b, h, t] = log sum_j exp(scale * q[b, t, h] . k_j)
    ```

    The table has `T` rows per group as `compact.block_union` writes them:
    `r = e` when `T = 1`, `r = e * Qb + t / bs` when `T = Qb` (one table per
    query block). `s` is the `exec_group_size` attribute or, without it,
    `Hq / (block_table dim 1)` (one table per group, a static dim).

    With a `workspace(%partial_out, %partial_lse)` of `S = dim 0` splits
    (`partial_out [S, B, C, Hq, D]`, `partial_lse [S, B, Hq, C]`, f32), the
    GPU lowering splits each row tile's table walk into `S` parts of equal
    length, run by `S` blocks, and merges their normalised partial outputs by
    their log-sum-exp in a second kernel, in a fixed order (the result does
    not depend on scheduling). `S` is a run-time size: the runtime chooses it
    from the work (small grids get more splits). The result is the same; the
    workspace's contents are undefined afterwards. The CPU lowering ignores
    it.

    A row that sees no key gets zeros (and `lse = -inf`). Dense attention is
    the same op with every block in the table. The `s` heads of a group and
    the chunk's rows form one packed row stream, so each page is read once
    per row tile, not once per head. `scale` defaults to `1 / sqrt(D)`.

    Example:

    ```mlir
    compact.paged_attention %q, %k_cache, %v_cache, %page_table, %ctx_lens,
        %table, %counts into %out
        {block_size = 128 : i64, layout = #compact.layout<nhd>}
        : memref<?x?x16x128xbf16>, memref<?x64x4x128xbf16>,
          memref<?x64x4x128xbf16>, memref<?x?xi32>, memref<?xi32>,
          memref<?x4x?xi32>, memref<?x4xi32> into memref<?x?x16x128xbf16>
    ```
  }];
  let arguments = (ins
    Arg<Compact_DataMemRef, "chunk queries [B, C, Hq, D]", [MemRead]>:$q,
    Arg<Compact_DataMemRef, "key cache", [MemRead]>:$k_cache,
    Arg<Compact_DataMemRef, "value cache", [MemRead]>:$v_cache,
    Arg<Compact_I32MemRef2D, "page table [B, max_pages]", [MemRead]>:$page_table,
    Arg<Compact_I32MemRef1D, "context lengths after the chunk [B]", [MemRead]>:$ctx_lens,
    Arg<Compact_I32MemRef3D, "block tables [B, E * T, Kb]", [MemRead]>:$block_table,
    Arg<Compact_I32MemRef2D, "block counts [B, E * T]", [MemRead]>:$block_counts,
    Arg<Compact_DataMemRef, "output [B, C, Hq, D]", [MemWrite]>:$out,
    Arg<Optional<Compact_LseMemRef>, "log-sum-exp [B, Hq, C]", [MemWrite]>:$lse,
    Arg<Optional<Compact_PartialOutMemRef>, "split partial outputs [S, B, C, Hq, D]",
        [MemRead, MemWrite]>:$partial_out,
    Arg<Optional<Compact_PartialLseMemRef>, "split partial log-sum-exp [S, B, Hq, C]",
        [MemRead, MemWrite]>:$partial_lse,
    Compact_PositiveI64Attr:$block_size,
    DefaultValuedAttr<Compact_KVLayoutAttr, "::mlir::compact::KVLayout::NHD">:$layout,
    OptionalAttr<F32Attr>:$scale,
    OptionalAttr<Compact_PositiveI64Attr>:$exec_group_size);
  let assemblyFormat = [{
    $q `,` $k_cache `,` $v_cache `,` $page_table `,` $ctx_lens `,` $block_table
    `,` $block_counts `into` $out (`,` $lse^)?
    (`workspace` `(` $partial_out^ `,` $partial_lse `:` type($partial_out) `,`
     type($partial_lse) `)`)? attr-dict `:` type($q) `,`
    type($k_cache) `,` type($v_cache) `,` type($page_table) `,` type($ctx_lens)
    `,` type($block_table) `,` type($block_counts) `into` type($out)
    (`,` type($lse)^)?
  }];
  let extraClassDeclaration = [{
    /// The softmax scale: the attribute, or 1 / sqrt(head dim).
    float getEffectiveScale();
    /// Query heads per execution group: the attribute, or Hq / (table dim 1).
    int64_t getEffectiveExecGroupSize();
  }];
  let hasVerifier = 1;
}

#endif // COMPACT_DIALECT_COMPACT_IR_COMPACTOPS_TD
