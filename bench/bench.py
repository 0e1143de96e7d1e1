"""Benchmark of the generated kernels against the peers of BENCH.md, in one
process on one GPU. Prints a progress line per configuration and a table, and
writes JSON in the schema of BENCH.md.

    python bench/bench.py --out results.json [--quick]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))

from compact_attention import Runtime  # noqa: E402
from workload import PagedCache, planted_retrieval  # noqa: E402

Hq, Hkv, D, PAGE, BLOCK = 16, 4, 128, 64, 128
G = Hq // Hkv


def timed(fn, warmup=3, reps=10):
    """Median of CUDA-event timings (ms)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def causal_flops(B, C, L, keys_per_row=None):
    """Useful FLOPs of the last chunk: 4 * D * Hq * attended keys."""
    P = L - C
    attended = B * (C * P + C * (C + 1) / 2) if keys_per_row is None else keys_per_row
    return 4 * D * Hq * attended


def git_commit():
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    except Exception:
        return os.environ.get("COMPACT_COMMIT", "unknown")


class Setup:
    """One (B, L) point: the workload in a paged cache, and what the peers need."""

    def __init__(self, rt, B, L, C, seed):
        self.B, self.L, self.C = B, L, C
        q, k, v = planted_retrieval(B, L, Hq, Hkv, D, BLOCK, seed=seed)
        self.q_all, self.k_all, self.v_all = q, k, v
        self.cache = PagedCache(B, L, Hkv, D, PAGE, seed=seed)
        self.lens_full = torch.full((B,), L, dtype=torch.int32, device="cuda")
        # Fill the cache with the whole prompt (one append of L tokens).
        rt.append_kv(k, v, self.cache.k, self.cache.v, self.cache.page_table, self.lens_full)
        self.Kb = -(-L // BLOCK)
        self.pooled = torch.zeros((B, Hkv, self.Kb, D), dtype=torch.bfloat16, device="cuda")
        rt.pool_keys(self.cache.k, self.cache.page_table, self.lens_full, self.pooled, chunk_len=L)
        self.q = q[:, L - C:].contiguous()  # the last chunk's queries
        torch.cuda.synchronize()


def bench_dense(rt, st, rows, quick):
    B, L, C = st.B, st.L, st.C
    flops = causal_flops(B, C, L)
    out = torch.empty_like(st.q)
    table = torch.empty((B, Hq // G, st.Kb), dtype=torch.int32, device="cuda")
    counts = torch.empty((B, Hq // G), dtype=torch.int32, device="cuda")
    rt.dense_table(st.lens_full, table, counts, G, chunk_len=C)

    def ours():
        rt.paged_attention(st.q, st.cache.k, st.cache.v, st.cache.page_table, st.lens_full, table,
                           counts, out, None, G)

    results = {"compact_dense": timed(ours)}
    # Peers on contiguous K / V ([B, H, L, D]).
    qt = st.q.transpose(1, 2)
    kt = st.k_all.transpose(1, 2)
    vt = st.v_all.transpose(1, 2)
    kt_c, vt_c = kt.contiguous(), vt.contiguous()

    def sdpa_flash():
        torch.ops.aten._scaled_dot_product_flash_attention(qt, kt_c, vt_c, 0.0, True)

    results["sdpa_flash"] = timed(sdpa_flash)
    # Correctness of ours against SDPA flash on this point.
    ref = torch.ops.aten._scaled_dot_product_flash_attention(qt, kt_c, vt_c, 0.0, True)[0]
    ours()
    torch.cuda.synchronize()
    err = float((out.transpose(1, 2).float() - ref.float()).norm() / ref.float().norm())
    if not quick:
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
            from torch.nn.attention.bias import causal_lower_right
            bias = causal_lower_right(C, L)
            kr = kt_c.repeat_interleave(G, dim=1)
            vr = vt_c.repeat_interleave(G, dim=1)

            def cudnn():
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    torch.nn.functional.scaled_dot_product_attention(qt, kr, vr, attn_mask=bias)

            results["sdpa_cudnn"] = timed(cudnn)
        except Exception as e:  # noqa: BLE001
            print(f"  cudnn unavailable: {e}", flush=True)
    for method, ms in results.items():
        rows.append({"method": method, "B": B, "C": C, "L": L, "last_chunk_ms": ms,
                     "prefill_ms": None, "tflops": flops / ms / 1e9,
                     "err_vs_sdpa": err if method == "compact_dense" else None})
    return results, err


def bench_gather_dense(st, table, counts, compact_out, t_select):
    """Explicit compaction (what QUOKA-style selection pays): gather the
    group union's K/V rows into contiguous buffers (a host sync to size
    them), then dense causal varlen flash attention per (sequence, KV head)
    with its G query heads. Selection time is ours, added."""
    B, L, C = st.B, st.L, st.C
    try:
        dev = "cuda"
        k_flat = st.k_all.reshape(-1, D)
        v_flat = st.v_all.reshape(-1, D)
        ar = torch.arange(BLOCK, device=dev)
        entry = torch.arange(st.Kb, device=dev)[None, None, :, None]
        bidx = torch.arange(B, device=dev)[:, None, None, None]
        hidx = torch.arange(Hkv, device=dev)[None, :, None, None]
        qg = st.q.view(B, C, Hkv, G, D).permute(0, 2, 1, 3, 4).reshape(B * Hkv * C, G, D)
        cum_q = torch.arange(0, B * Hkv + 1, device=dev, dtype=torch.int32) * C

        def gather_dense():
            pos = table.clamp(min=0).long()[..., None] * BLOCK + ar
            valid = (entry < counts[..., None, None]) & (pos < L)
            idx = ((bidx * L + pos) * Hkv + hidx)[valid]  # host sync: the gathered size
            kg = k_flat.index_select(0, idx).unsqueeze(1)
            vg = v_flat.index_select(0, idx).unsqueeze(1)
            nk = valid.flatten(2).sum(-1).flatten()
            cum_k = torch.nn.functional.pad(nk.cumsum(0), (1, 0)).to(torch.int32)
            return torch.ops.aten._flash_attention_forward(
                qg, kg, vg, cum_q, cum_k, C, int(nk.max()), 0.0, True, False)[0]

        ms = timed(gather_dense)
        got = gather_dense().view(B, Hkv, C, G, D).permute(0, 2, 1, 3, 4).reshape(B, C, Hq, D)
        err = float((got.float() - compact_out.float()).norm() / compact_out.float().norm())
        return {"method": "gather_dense", "B": B, "C": C, "L": L, "s": G, "alpha": 0.06,
                "last_chunk_ms": ms + t_select, "attention_ms": ms, "select_ms": t_select,
                "prefill_ms": None, "tflops": None, "err_vs_compact": err}
    except Exception as e:  # noqa: BLE001
        print(f"  gather_dense unavailable: {e}", flush=True)
        return None


def bench_compact(rt, st, rows, alpha=0.06, sink=2, window=4):
    B, L, C = st.B, st.L, st.C
    lens = st.lens_full
    out = torch.empty_like(st.q)
    res = {}
    Qb = -(-C // BLOCK)
    for s, per_qb in ((G, False), (1, False), (1, True)):
        # One table per execution group, or one per group and query block.
        E = Hq // s * (Qb if per_qb else 1)
        table = torch.empty((B, E, st.Kb), dtype=torch.int32, device="cuda")
        counts = torch.empty((B, E), dtype=torch.int32, device="cuda")

        def select():
            rt.score_select_union(st.q, st.pooled, lens, table, counts, alpha, sink, window, s)

        def attend():
            rt.paged_attention(st.q, st.cache.k, st.cache.v, st.cache.page_table, lens, table,
                               counts, out, None, s)

        def both():
            select()
            attend()

        t_select = timed(select)
        select()
        t_attend = timed(attend)
        t_total = timed(both)
        torch.cuda.synchronize()
        nb = st.Kb
        density_union = float(counts.double().mean() / nb)
        # Keys each row attends: union blocks that are causally visible.
        flops = causal_flops(B, C, L) * density_union
        res[(s, per_qb)] = (t_total, t_select, t_attend, density_union)
        if s == G:
            gather_row = bench_gather_dense(st, table, counts, out, t_select)
            if gather_row:
                gather_row["density_union"] = density_union
                rows.append(gather_row)
        rows.append({"method": "compact", "B": B, "C": C, "L": L, "s": s, "alpha": alpha,
                     "per_query_block": per_qb,
                     "last_chunk_ms": t_total, "select_ms": t_select, "attention_ms": t_attend,
                     "prefill_ms": None, "tflops": flops / t_attend / 1e9,
                     "density_union": density_union})
    return res


def bench_flex_sparse(rt, st, rows, alpha=0.06, sink=2, window=4):
    """FlexAttention block-sparse on the last chunk with our selector's mask
    (handed over: the selection is not timed), as in prefill_bench.py."""
    from prefill_bench import causal_selection, flex, flex_block_mask
    B, L, C = st.B, st.L, st.C
    Qb = -(-C // BLOCK)
    scores = torch.empty((B, Hq, Qb, st.Kb), device="cuda")
    rt.block_scores(st.q, st.pooled, st.lens_full, scores)
    mask = torch.empty((B, Hq, Qb, st.Kb), dtype=torch.int8, device="cuda")
    rt.select_blocks(scores, st.lens_full, C, mask, alpha, sink, window)
    valid = causal_selection(st, L - C, C)
    sel = mask.bool() & valid
    f = flex()
    bm = flex_block_mask(st, L - C, C, sel)
    q, k, v = (t.transpose(1, 2).contiguous() for t in (st.q, st.k_all, st.v_all))
    t = timed(lambda: f(q, k, v, block_mask=bm, enable_gqa=True))
    rows.append({"method": "flex_sparse", "B": B, "C": C, "L": L, "alpha": alpha,
                 "last_chunk_ms": t, "attention_ms": t, "prefill_ms": None,
                 "density_mask": float(sel.sum() / valid.sum())})
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-results.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--contexts", default="32768,65536,131072")
    ap.add_argument("--batches", default="1,8")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    rt = Runtime(Hq, Hkv, D, PAGE, BLOCK, "bfloat16", "nhd")
    rows = []
    C = 1024
    print(f"{'B':>2} {'L':>7} {'ours dense':>11} {'sdpa flash':>11} {'cudnn':>8} {'TF/s ours':>9} "
          f"{'TF/s sdpa':>9} {'err':>8} {'compact s=4':>12} {'sel':>6} {'dens':>6} {'s=1':>8} "
          f"{'s=1 qb':>8} {'qb attn':>8} {'flex':>8}",
          flush=True)
    for B in map(int, args.batches.split(",")):
        for L in map(int, args.contexts.split(",")):
            st = Setup(rt, B, L, C, seed=B * 1000 + L)
            dense, err = bench_dense(rt, st, rows, args.quick)
            comp = bench_compact(rt, st, rows)
            flex_ms = bench_flex_sparse(rt, st, rows)
            fl = causal_flops(B, C, L)
            print(f"{B:>2} {L:>7} {dense['compact_dense']:>9.3f}ms {dense['sdpa_flash']:>9.3f}ms "
                  f"{dense.get('sdpa_cudnn', float('nan')):>6.3f}ms "
                  f"{fl / dense['compact_dense'] / 1e9:>9.1f} {fl / dense['sdpa_flash'] / 1e9:>9.1f} "
                  f"{err:>8.1e} {comp[(G, False)][0]:>10.3f}ms {comp[(G, False)][1]:>6.3f} "
                  f"{comp[(G, False)][3]:>6.3f} {comp[(1, False)][0]:>6.3f}ms "
                  f"{comp[(1, True)][0]:>6.3f}ms {comp[(1, True)][2]:>6.3f}ms {flex_ms:>6.3f}ms",
                  flush=True)
            del st
            torch.cuda.empty_cache()
    result = {
        "device": torch.cuda.get_device_name(),
        "commit": os.environ.get("COMPACT_COMMIT") or git_commit(),
        "date": datetime.date.today().isoformat(),
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                     "triton": __import__("triton").__version__},
        "workload": {"name": "planted_retrieval", "Hq": Hq, "Hkv": Hkv, "D": D, "page": PAGE,
                     "block": BLOCK, "hot_frac": 0.04, "signal": 8.0, "alpha": 0.06, "sink": 2,
                     "window": 4},
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
