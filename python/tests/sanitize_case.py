"""Every kernel of the default configuration once, on small and edge shapes
(odd lengths, a single-token chunk, partial last pages, empty tables), for
compute-sanitizer (memcheck / racecheck / initcheck / synccheck)."""


import torch

from cases import make_case
from compact_attention import ChunkedPrefill, Runtime

gen = torch.Generator().manual_seed(0)
for path, B, C, lens in [("wgmma", 2, 77, [300, 77]), ("wgmma", 1, 1, [1]),
                         ("wgmma", 3, 200, [1000, 260, 513]), ("mma_sync", 3, 200, [1000, 260, 513])]:
    rt = Runtime(16, 4, 128, 64, 128, "bfloat16", "nhd", matrix_path=path)
    case = make_case(gen, B, C, lens, 16, 4, 128, 64, 128)
    k_new = torch.randn((B, C, 4, 128), device="cuda").bfloat16()
    rt.append_kv(k_new, k_new.clone(), case["k_cache"], case["v_cache"], case["page_table"],
                 case["lens"])
    Kb = case["Kb"]
    pooled = torch.zeros((B, 4, Kb, 128), dtype=torch.bfloat16, device="cuda")
    rt.pool_keys(case["k_cache"], case["page_table"], case["lens"], pooled, C)
    qb = -(-C // 128)
    scores = torch.zeros((B, 16, qb, Kb), device="cuda")
    rt.block_scores(case["q"], pooled, case["lens"], scores)
    mask = torch.zeros((B, 16, qb, Kb), dtype=torch.int8, device="cuda")
    rt.select_blocks(scores, case["lens"], C, mask, 0.06, 2, 4)
    # One table per group, and one per group and query block.
    for s, T in ((1, 1), (2, 1), (4, 1), (1, qb), (4, qb)):
        table = torch.zeros((B, 16 // s * T, Kb), dtype=torch.int32, device="cuda")
        counts = torch.zeros((B, 16 // s * T), dtype=torch.int32, device="cuda")
        out = torch.zeros_like(case["q"])
        lse = torch.zeros((B, 16, C), device="cuda")
        rt.block_union(mask, case["lens"], C, table, counts, s)
        rt.select_union(scores, case["lens"], C, table, counts, 0.06, 2, 4, s)
        rt.score_select_union(case["q"], pooled, case["lens"], table, counts, 0.06, 2, 4, s)
        rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                           case["lens"], table, counts, out, lse, s)
        rt.dense_table(case["lens"], table, counts, s, C)
        rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                           case["lens"], table, counts, out, None, s)
        counts.zero_()
        rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                           case["lens"], table, counts, out, lse, s)
# The plan over a whole prompt (dense first chunk, selected later ones), with
# per-query-block tables and with group unions, and with the debug checks on.
rt = Runtime(16, 4, 128, 64, 128, "bfloat16", "nhd", checks=True)
B, L, C = 2, 1500, 256
case = make_case(gen, B, C, [L] * B, 16, 4, 128, 64, 128)
q, k, v = (torch.randn((B, L, h, 128), device="cuda").bfloat16() for h in (16, 4, 4))
for s, per_qb in ((1, True), (4, False)):
    pooled = torch.zeros((B, 4, case["Kb"], 128), dtype=torch.bfloat16, device="cuda")
    plan = ChunkedPrefill(rt, B, case["Kb"], exec_group_size=s, per_query_block=per_qb,
                          max_chunk_len=C, sink=1, window=1)
    for c0 in range(0, L, C):
        c = min(C, L - c0)
        lens = torch.full((B,), c0 + c, dtype=torch.int32, device="cuda")
        plan(q[:, c0:c0 + c].contiguous(), k[:, c0:c0 + c].contiguous(),
             v[:, c0:c0 + c].contiguous(), case["k_cache"], case["v_cache"], case["page_table"],
             lens, pooled, max_prefix_len=c0)
torch.cuda.synchronize()
print("sanitize_case: done")
