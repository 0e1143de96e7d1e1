"""GPU time of each generated kernel of one chunk (selection and attention),
from the CUDA activity trace of torch.profiler: where a chunk's time goes.

    python3 bench/kernel_times.py --configs 8:1024:131072,8:2048:131072
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))
from bench import Setup  # noqa: E402
from compact_attention import Runtime  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="8:1024:131072,8:2048:131072")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    rt = Runtime(16, 4, 128, 64, 128, "bfloat16", "nhd")
    for spec in args.configs.split(","):
        B, C, L = map(int, spec.split(":"))
        st = Setup(rt, B, L, C, seed=3)
        qb = -(-C // 128)
        table = torch.empty((B, 16 * qb, st.Kb), dtype=torch.int32, device="cuda")
        counts = torch.empty((B, 16 * qb), dtype=torch.int32, device="cuda")
        out = torch.empty_like(st.q)

        def chunk():
            rt.score_select_union(st.q, st.pooled, st.lens_full, table, counts, 0.06, 2, 4, 1)
            rt.paged_attention(st.q, st.cache.k, st.cache.v, st.cache.page_table, st.lens_full,
                               table, counts, out, None, 1)

        for _ in range(3):
            chunk()
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(args.reps):
                chunk()
            torch.cuda.synchronize()
        totals = defaultdict(float)
        for e in prof.events():
            if e.device_type == torch.autograd.DeviceType.CUDA:
                totals[e.name.split("__")[-1]] += e.device_time_total / args.reps
        print(f"B={B} C={C} L={L} (s = 1, a table per query block), us per chunk:")
        for name, us in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"  {name:40s} {us:9.1f}")
        del st
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
