"""One dense and one compact (s = 1, per query block) last-chunk attention
call of the standard workload, for Nsight Compute:

    ncu --section SpeedOfLight --section WarpStateStats -k regex:attention \
        python bench/ncu_attention.py --batch 8 --context 131072
"""

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))

from bench import BLOCK, D, G, Hkv, Hq, PAGE, Setup  # noqa: E402
from compact_attention import Runtime  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--context", type=int, default=131072)
    ap.add_argument("--chunk", type=int, default=1024)
    args = ap.parse_args()
    rt = Runtime(Hq, Hkv, D, PAGE, BLOCK, "bfloat16", "nhd")
    st = Setup(rt, args.batch, args.context, args.chunk, seed=1)
    B, Kb = st.B, st.Kb
    out = torch.empty_like(st.q)
    # Dense: every block, s = G.
    table = torch.empty((B, Hq // G, Kb), dtype=torch.int32, device="cuda")
    counts = torch.empty((B, Hq // G), dtype=torch.int32, device="cuda")
    rt.dense_table(st.lens_full, table, counts, G, chunk_len=args.chunk)
    rt.paged_attention(st.q, st.cache.k, st.cache.v, st.cache.page_table, st.lens_full, table,
                       counts, out, None, G)
    # Compact: the selector's mask as per-head, per-query-block tables.
    qb = -(-args.chunk // BLOCK)
    table = torch.empty((B, Hq * qb, Kb), dtype=torch.int32, device="cuda")
    counts = torch.empty((B, Hq * qb), dtype=torch.int32, device="cuda")
    rt.score_select_union(st.q, st.pooled, st.lens_full, table, counts, 0.06, 2, 4, 1)
    rt.paged_attention(st.q, st.cache.k, st.cache.v, st.cache.page_table, st.lens_full, table,
                       counts, out, None, 1)
    torch.cuda.synchronize()
    print("density", float(counts.double().mean() / Kb))


if __name__ == "__main__":
    main()
