"""Every kernel of the kernel library at least once, on small and edge shapes
(odd lengths, a single-token chunk, partial last pages, empty tables, both
matrix paths, the execution-group choice, cluster pairs), and the plan (with
and without a group slack), for compute-sanitizer (memcheck / racecheck /
initcheck / synccheck)."""


import torch

from cases import LIBRARY, make_case
from compact_attention import ChunkedPrefill, Runtime

gen = torch.Generator().manual_seed(0)
DEFAULT = LIBRARY[0]
# The default configuration on every edge shape and both matrix paths; every
# other configuration of the library on one shape with odd lengths. These
# small grids split the KV walk (split-KV chosen from the work); one run pins
# 16 splits, more than some rows have blocks (empty splits).
RUNS = [(DEFAULT, "wgmma", 2, 77, [300, 77], 0), (DEFAULT, "wgmma", 1, 1, [1], 0),
        (DEFAULT, "wgmma", 3, 200, [1000, 260, 513], 0),
        (DEFAULT, "wgmma", 3, 200, [1000, 260, 513], 16),
        (DEFAULT, "mma_sync", 3, 200, [1000, 260, 513], 0)]
RUNS += [(cfg, "wgmma", 2, 200, [777, 200], 0) for cfg in LIBRARY[1:]]
for cfg, path, B, C, lens, kv_splits in RUNS:
    Hq, Hkv, D, PS, bs, dtype, layout, groups = cfg
    rt = Runtime(Hq, Hkv, D, PS, bs, "bfloat16" if dtype == "bf16" else "float16", layout,
                 matrix_path=path, kv_splits=kv_splits)
    case = make_case(gen, B, C, lens, Hq, Hkv, D, PS, bs, dtype, layout)
    dt = case["q"].dtype
    k_new = torch.randn((B, C, Hkv, D), device="cuda").to(dt)
    rt.append_kv(k_new, k_new.clone(), case["k_cache"], case["v_cache"], case["page_table"],
                 case["lens"])
    Kb = case["Kb"]
    pooled = torch.zeros((B, Hkv, Kb, D), dtype=dt, device="cuda")
    rt.pool_keys(case["k_cache"], case["page_table"], case["lens"], pooled, C)
    qb = -(-C // bs)
    scores = torch.zeros((B, Hq, qb, Kb), device="cuda")
    rt.block_scores(case["q"], pooled, case["lens"], scores)
    mask = torch.zeros((B, Hq, qb, Kb), dtype=torch.int8, device="cuda")
    rt.select_blocks(scores, case["lens"], C, mask, 0.06, 2, 4)
    # One table per group, and (where a row tile lies in one query block) one
    # per group and query block.
    for s, T in [(s, 1) for s in groups] + [(s, qb) for s in groups if (bs * s) % 128 == 0]:
        table = torch.zeros((B, Hq // s * T, Kb), dtype=torch.int32, device="cuda")
        counts = torch.zeros((B, Hq // s * T), dtype=torch.int32, device="cuda")
        out = torch.zeros_like(case["q"])
        lse = torch.zeros((B, Hq, C), device="cuda")
        rt.block_union(mask, case["lens"], C, table, counts, s)
        rt.select_union(scores, case["lens"], C, table, counts, 0.06, 2, 4, s)
        rt.score_select_union(case["q"], pooled, case["lens"], table, counts, 0.06, 2, 4, s)
        if s == 1:
            # The execution-group choice on the per-head tables (a slack that
            # rewrites some rows, then one that rewrites every group).
            for slack in (0.5, 1e9):
                rt.choose_exec_groups(table, counts, C, slack)
        rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                           case["lens"], table, counts, out, lse, s)
        rt.dense_table(case["lens"], table, counts, s, C)
        rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                           case["lens"], table, counts, out, None, s)
        counts.zero_()
        rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                           case["lens"], table, counts, out, lse, s)
# A full table row (as many entries as the capacity, 65) split 16 ways: the
# last splits are empty and must not read past the row.
rt = Runtime(16, 4, 128, 64, 128, "bfloat16", "nhd", kv_splits=16)
case = make_case(gen, 1, 64, [65 * 128], 16, 4, 128, 64, 128, capacity_slack=0)
table = torch.zeros((1, 16, case["Kb"]), dtype=torch.int32, device="cuda")
counts = torch.zeros((1, 16), dtype=torch.int32, device="cuda")
rt.dense_table(case["lens"], table, counts, 1, 64)
assert int(counts.min()) == case["Kb"] == 65
rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"], case["lens"],
                   table, counts, torch.zeros_like(case["q"]), None, 1)
# Unsplit walks as cluster pairs (TMA multicast, remote barrier arrivals):
# dense and selected tables, one row per group and one per query block (forced
# clusters: pairs whose rows differ walk alone).
rt = Runtime(16, 4, 128, 64, 128, "bfloat16", "nhd", kv_splits=1, clusters="always")
B, C = 2, 256
case = make_case(gen, B, C, [1000, 700], 16, 4, 128, 64, 128)
pooled = torch.zeros((B, 4, case["Kb"], 128), dtype=torch.bfloat16, device="cuda")
rt.pool_keys(case["k_cache"], case["page_table"], case["lens"], pooled, C)
for s in (1, 2, 4):
    for T in (1, 2):
        table = torch.zeros((B, 16 // s * T, case["Kb"]), dtype=torch.int32, device="cuda")
        counts = torch.zeros((B, 16 // s * T), dtype=torch.int32, device="cuda")
        if T == 1:
            rt.dense_table(case["lens"], table, counts, s, C)
        else:
            rt.score_select_union(case["q"], pooled, case["lens"], table, counts, 0.06, 2, 4, s)
        rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                           case["lens"], table, counts, torch.zeros_like(case["q"]), None, s)
# The plan over a whole prompt (dense first chunk, selected later ones), with
# per-query-block tables and with group unions, and with the debug checks on.
rt = Runtime(16, 4, 128, 64, 128, "bfloat16", "nhd", checks=True)
B, L, C = 2, 1500, 256
case = make_case(gen, B, C, [L] * B, 16, 4, 128, 64, 128)
q, k, v = (torch.randn((B, L, h, 128), device="cuda").bfloat16() for h in (16, 4, 4))
for s, per_qb, slack in ((1, True, 0.0), (4, False, 0.0), (1, True, 1.0)):
    pooled = torch.zeros((B, 4, case["Kb"], 128), dtype=torch.bfloat16, device="cuda")
    plan = ChunkedPrefill(rt, B, case["Kb"], exec_group_size=s, per_query_block=per_qb,
                          max_chunk_len=C, sink=1, window=1, group_slack=slack)
    for c0 in range(0, L, C):
        c = min(C, L - c0)
        lens = torch.full((B,), c0 + c, dtype=torch.int32, device="cuda")
        plan(q[:, c0:c0 + c].contiguous(), k[:, c0:c0 + c].contiguous(),
             v[:, c0:c0 + c].contiguous(), case["k_cache"], case["v_cache"], case["page_table"],
             lens, pooled, max_prefix_len=c0)
torch.cuda.synchronize()
print("sanitize_case: done")
