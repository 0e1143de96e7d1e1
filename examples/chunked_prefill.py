"""A whole chunked prefill of the standard workload through CompactAttention.

LLaMA-3.1-8B attention at TP2 (16 query / 4 KV heads, head dim 128, bf16), the
"planted retrieval" inputs of bench/workload.py, 32K context in chunks of
1024 (defaults). Per chunk: append the chunk's K/V to the paged cache, pool
keys, select (FlashPrefill, alpha 0.06, sink 2, window 4) and union into one
block table per execution group, and attend over the tables in place. Prints
per-stage times, the densities, and the error against dense attention.

    python examples/chunked_prefill.py [--context 32768] [--chunk 1024] [--batch 1]
                                       [--exec-group 4] [--alpha 0.06]

Needs an sm_90a GPU and PyTorch; on a machine without one, run compact-run
(the CPU path) instead.
"""

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--context", type=int, default=32768)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--exec-group", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=0.06)
    ap.add_argument("--sink", type=int, default=2)
    ap.add_argument("--window", type=int, default=4)
    args = ap.parse_args()

    import torch
    if not torch.cuda.is_available():
        sys.exit("examples/chunked_prefill.py: no CUDA device; the CPU path is build/bin/compact-run")
    from compact_attention import ChunkedPrefill, Runtime
    from workload import PagedCache, planted_retrieval

    Hq, Hkv, D, PAGE, BLOCK = 16, 4, 128, 64, 128
    B, L, C, s = args.batch, args.context, args.chunk, args.exec_group
    rt = Runtime(Hq, Hkv, D, PAGE, BLOCK, "bfloat16", "nhd")
    q, k, v = planted_retrieval(B, L, Hq, Hkv, D, BLOCK, seed=1)
    cache = PagedCache(B, L, Hkv, D, PAGE, seed=1)
    Kb = -(-L // BLOCK)
    pooled = torch.zeros((B, Hkv, Kb, D), dtype=torch.bfloat16, device="cuda")
    prefill = ChunkedPrefill(rt, B, Kb, exec_group_size=s, alpha=args.alpha, sink=args.sink,
                             window=args.window)
    E = Hq // s
    table = torch.empty((B, E, Kb), dtype=torch.int32, device="cuda")
    counts = torch.empty((B, E), dtype=torch.int32, device="cuda")
    print(f"B={B} L={L} C={C} heads {Hq}/{Hkv} D={D} bf16, exec group s={s}, "
          f"alpha={args.alpha} sink={args.sink} window={args.window}")
    print(f"{'chunk':>5} {'prefix':>7} {'append+pool':>11} {'select':>8} {'attention':>9} "
          f"{'union%':>7} {'err_dense':>9}")
    totals = [0.0, 0.0, 0.0]
    for i, c0 in enumerate(range(0, L, C)):
        c = min(C, L - c0)
        qc, kc, vc = (x[:, c0:c0 + c].contiguous() for x in (q, k, v))
        lens = torch.full((B,), c0 + c, dtype=torch.int32, device="cuda")
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        ev[0].record()
        rt.append_kv(kc, vc, cache.k, cache.v, cache.page_table, lens)
        rt.pool_keys(cache.k, cache.page_table, lens, pooled, chunk_len=c)
        ev[1].record()
        last = (c0 + min(BLOCK, c) - 1) // BLOCK
        if last < args.sink + args.window:   # what the plan does: dense
            rt.dense_table(lens, table, counts, s, chunk_len=c)
        else:
            rt.score_select_union(qc, pooled, lens, table, counts, args.alpha, args.sink,
                                  args.window, s)
        ev[2].record()
        out = torch.empty_like(qc)
        rt.paged_attention(qc, cache.k, cache.v, cache.page_table, lens, table, counts, out,
                           None, s)
        ev[3].record()
        torch.cuda.synchronize()
        times = [ev[j].elapsed_time(ev[j + 1]) for j in range(3)]
        totals = [a + b for a, b in zip(totals, times)]
        density = float(counts.double().mean()) / -(-(c0 + c) // BLOCK)
        # Dense attention of the chunk (SDPA on the contiguous prefix).
        ref = torch.nn.functional.scaled_dot_product_attention(
            qc.transpose(1, 2), k[:, :c0 + c].transpose(1, 2), v[:, :c0 + c].transpose(1, 2),
            is_causal=False, enable_gqa=True,
            attn_mask=torch.ones(c, c0 + c, dtype=torch.bool, device="cuda").tril(c0))
        err = float((out.transpose(1, 2).float() - ref.float()).norm() / ref.float().norm())
        print(f"{i:>5} {c0:>7} {times[0]:>9.3f}ms {times[1]:>6.3f}ms {times[2]:>7.3f}ms "
              f"{100 * density:>6.1f}% {err:>9.2e}")
    print(f"total: append+pool {totals[0]:.1f} ms, selection {totals[1]:.1f} ms, "
          f"attention {totals[2]:.1f} ms")
    # The same prefill through the plan (one runtime call per chunk).
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for c0 in range(0, L, C):
        c = min(C, L - c0)
        lens = torch.full((B,), c0 + c, dtype=torch.int32, device="cuda")
        prefill(q[:, c0:c0 + c].contiguous(), k[:, c0:c0 + c].contiguous(),
                v[:, c0:c0 + c].contiguous(), cache.k, cache.v, cache.page_table, lens, pooled,
                max_prefix_len=c0)
    end.record()
    end.synchronize()
    print(f"whole prefill through the plan: {start.elapsed_time(end):.1f} ms")


if __name__ == "__main__":
    main()
