"""One chunk at B = 8, L = 128K (selection and attention) for ncu."""

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))
from bench import Setup  # noqa: E402
from compact_attention import Runtime  # noqa: E402

B, L, C = 8, 131072, 1024
rt = Runtime(16, 4, 128, 64, 128, "bfloat16", "nhd")
st = Setup(rt, B, L, C, seed=3)
for s in (4, 1):
    E = 16 // s
    table = torch.empty((B, E, st.Kb), dtype=torch.int32, device="cuda")
    counts = torch.empty((B, E), dtype=torch.int32, device="cuda")
    out = torch.empty_like(st.q)
    rt.score_select_union(st.q, st.pooled, st.lens_full, table, counts, 0.06, 2, 4, s)
    rt.paged_attention(st.q, st.cache.k, st.cache.v, st.cache.page_table, st.lens_full, table,
                       counts, out, None, s)
qb = -(-C // 128)
scores = torch.empty((B, 16, qb, st.Kb), device="cuda")
rt.block_scores(st.q, st.pooled, st.lens_full, scores)
torch.cuda.synchronize()
print("profile_case: done")
