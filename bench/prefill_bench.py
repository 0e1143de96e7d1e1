"""Whole chunked prefill of the standard workload, every method of BENCH.md
in one process on one GPU: per configuration (B, C, L) the whole-prefill
attention time (every chunk; ours includes selection), the last chunk, the
selection densities, and the error against dense attention.

    python bench/prefill_bench.py --configs 8:1024:131072,1:1024:131072 --out x.json
"""

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))

from compact_attention import ChunkedPrefill, Runtime  # noqa: E402
from workload import PagedCache, planted_retrieval  # noqa: E402

Hq, Hkv, D, PAGE, BLOCK = 16, 4, 128, 64, 128
G = Hq // Hkv
ALPHA, SINK, WINDOW = 0.06, 2, 4


class Timer:
    """CUDA-event time of a region (ms), accumulated."""

    def __init__(self):
        self.total = 0.0

    def __enter__(self):
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)
        self.start.record()
        return self

    def __exit__(self, *exc):
        self.end.record()
        self.end.synchronize()
        self.total += self.start.elapsed_time(self.end)


def median_ms(fn, reps=10, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        with Timer() as t:
            fn()
        times.append(t.total)
    return sorted(times)[len(times) // 2]


def chunk_flops(B, C, L):
    P = L - C
    return 4 * D * Hq * B * (C * P + C * (C + 1) / 2)


class Point:
    """One (B, C, L): the workload (planted retrieval unless `inputs` gives
    q, k, v), contiguous K/V for the peers and a paged cache for ours."""

    def __init__(self, rt, B, C, L, seed, inputs=None):
        self.B, self.C, self.L = B, C, L
        self.q, self.k, self.v = inputs or planted_retrieval(B, L, Hq, Hkv, D, BLOCK, seed=seed)
        self.qt = self.q.transpose(1, 2).contiguous()   # [B, Hq, L, D]
        self.kt = self.k.transpose(1, 2).contiguous()   # [B, Hkv, L, D]
        self.vt = self.v.transpose(1, 2).contiguous()
        self.cache = PagedCache(B, L, Hkv, D, PAGE, seed=seed)
        self.Kb = -(-L // BLOCK)
        self.pooled = torch.zeros((B, Hkv, self.Kb, D), dtype=torch.bfloat16, device="cuda")
        self.chunks = [(c0, min(C, L - c0)) for c0 in range(0, L, C)]
        # Each chunk's rows as contiguous tensors, made before any timing.
        self.cq = [self.q[:, c0:c0 + c].contiguous() for c0, c in self.chunks]
        self.ck = [self.k[:, c0:c0 + c].contiguous() for c0, c in self.chunks]
        self.cv = [self.v[:, c0:c0 + c].contiguous() for c0, c in self.chunks]
        # The whole prompt in the cache and its pooled keys, so the peers'
        # selection can run without ours (ours rewrites the same values).
        full = self.lens(L)
        rt.append_kv(self.k, self.v, self.cache.k, self.cache.v, self.cache.page_table, full)
        rt.pool_keys(self.cache.k, self.cache.page_table, full, self.pooled, chunk_len=L)
        torch.cuda.synchronize()

    def lens(self, end):
        return torch.full((self.B,), end, dtype=torch.int32, device="cuda")


def run_ours(pt, prefill):
    """The whole prefill through the plan; returns (ms, last chunk output)."""
    out = None
    lens = [pt.lens(c0 + c) for c0, c in pt.chunks]
    torch.cuda.synchronize()
    with Timer() as t:
        for i, ((c0, c), l) in enumerate(zip(pt.chunks, lens)):
            out = prefill(pt.cq[i], pt.ck[i], pt.cv[i], pt.cache.k, pt.cache.v,
                          pt.cache.page_table, l, pt.pooled, max_prefix_len=c0)
    return t.total, out


def run_ours_dense(rt, pt):
    """Every chunk dense through the same kernel (dense tables)."""
    B = pt.B
    table = torch.empty((B, Hq // G, pt.Kb), dtype=torch.int32, device="cuda")
    counts = torch.empty((B, Hq // G), dtype=torch.int32, device="cuda")
    lens = [pt.lens(c0 + c) for c0, c in pt.chunks]
    out = None
    torch.cuda.synchronize()
    with Timer() as t:
        for i, ((c0, c), l) in enumerate(zip(pt.chunks, lens)):
            q = pt.cq[i]
            rt.append_kv(pt.ck[i], pt.cv[i], pt.cache.k, pt.cache.v, pt.cache.page_table, l)
            rt.dense_table(l, table, counts, G, chunk_len=c)
            out = torch.empty_like(q)
            rt.paged_attention(q, pt.cache.k, pt.cache.v, pt.cache.page_table, l, table, counts,
                               out, None, G)
    return t.total, out


def run_sdpa(pt):
    out = None
    torch.cuda.synchronize()
    with Timer() as t:
        for c0, c in pt.chunks:
            out = torch.ops.aten._scaled_dot_product_flash_attention(
                pt.qt[:, :, c0:c0 + c], pt.kt[:, :, :c0 + c], pt.vt[:, :, :c0 + c], 0.0, True)[0]
    return t.total, out


# -- FlexAttention ------------------------------------------------------------

_flex = None
OFFSET = None


def flex():
    global _flex, OFFSET
    if _flex is None:
        from torch.nn.attention.flex_attention import flex_attention
        torch._dynamo.config.cache_size_limit = 256
        _flex = torch.compile(flex_attention, dynamic=False)
        OFFSET = torch.zeros((), dtype=torch.int32, device="cuda")
    return _flex


def causal_offset(b, h, q_idx, kv_idx):
    return q_idx + OFFSET >= kv_idx


def flex_block_mask(pt, c0, c, selected):
    """BlockMask of the chunk [c0, c0 + c) over the whole K/V buffer from a
    [B, Hq, Qb, Kb] bool selection: blocks wholly before a query block are
    'full', the rest (the diagonal) get the causal mask_mod."""
    from torch.nn.attention.flex_attention import BlockMask
    Qb = -(-c // BLOCK)
    qb = torch.arange(Qb, device="cuda")[:, None]
    kb = torch.arange(pt.Kb, device="cuda")[None, :]
    full = (kb + 1) * BLOCK - 1 <= c0 + qb * BLOCK
    sel = selected.bool()
    full_sel = sel & full
    part_sel = sel & ~full

    def indices(m):
        order = torch.argsort(m.to(torch.int8), dim=-1, descending=True, stable=True)
        return m.sum(-1).to(torch.int32), order.to(torch.int32)

    n_part, i_part = indices(part_sel)
    n_full, i_full = indices(full_sel)
    OFFSET.fill_(c0)
    return BlockMask.from_kv_blocks(n_part, i_part, n_full, i_full, BLOCK_SIZE=BLOCK,
                                    mask_mod=causal_offset, seq_lengths=(c, pt.L))


def causal_selection(pt, c0, c):
    Qb = -(-c // BLOCK)
    qb = torch.arange(Qb, device="cuda")[:, None]
    kb = torch.arange(pt.Kb, device="cuda")[None, :]
    last = (c0 + torch.clamp((qb + 1) * BLOCK, max=c) - 1) // BLOCK
    return (kb <= last).expand(pt.B, Hq, Qb, pt.Kb)


def selector_mask(rt, pt, c0, c, alpha):
    """The FlashPrefill selector's own [B, Hq, Qb, Kb] mask for the chunk
    (pooled keys of the prefix + chunk must be current)."""
    l = pt.lens(c0 + c)
    Qb = -(-c // BLOCK)
    scores = torch.empty((pt.B, Hq, Qb, pt.Kb), device="cuda")
    rt.block_scores(pt.q[:, c0:c0 + c].contiguous(), pt.pooled, l, scores)
    mask = torch.empty((pt.B, Hq, Qb, pt.Kb), dtype=torch.int8, device="cuda")
    rt.select_blocks(scores, l, c, mask, alpha, SINK, WINDOW)
    return mask


def run_flex(rt, pt, sparse, alpha=ALPHA):
    """Whole prefill, FlexAttention over the same blocks (dense: every causal
    block); only the attention calls are timed (not the masks, nor the
    selection)."""
    f = flex()
    total, out, density = 0.0, None, None
    for i, (c0, c) in enumerate(pt.chunks):
        if sparse and c0 > 0:
            # ours appended and pooled this chunk already in the plan run; the
            # first chunk is dense for every method.
            sel = selector_mask(rt, pt, c0, c, alpha).bool() & causal_selection(pt, c0, c)
        else:
            sel = causal_selection(pt, c0, c)
        bm = flex_block_mask(pt, c0, c, sel)
        q = pt.qt[:, :, c0:c0 + c].contiguous()
        if i == 0:
            f(q, pt.kt, pt.vt, block_mask=bm, enable_gqa=True)  # compile
        torch.cuda.synchronize()
        with Timer() as t:
            out = f(q, pt.kt, pt.vt, block_mask=bm, enable_gqa=True)
        total += t.total
        if i == len(pt.chunks) - 1:
            valid = causal_selection(pt, c0, c)
            density = float(sel.sum() / valid.sum())
    return total, out, density


def run_header():
    """What every result file starts with: device, commit, date, versions."""
    return {"device": torch.cuda.get_device_name(),
            "commit": os.environ.get("COMPACT_COMMIT", "unknown"),
            "date": datetime.date.today().isoformat(),
            "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                         "triton": __import__("triton").__version__}}


def rel(a, b):
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="8:1024:131072,1:1024:131072")
    ap.add_argument("--methods", default="sdpa,flex_dense,flex_sparse,compact_dense,compact")
    ap.add_argument("--alphas", default=str(ALPHA),
                    help="selector thresholds for the sparse methods (a sweep draws the "
                         "fidelity-vs-time frontier)")
    ap.add_argument("--kv-splits", default="0",
                    help="split-KV settings of our runtime to compare in this process "
                         "(0: chosen from the work, 1: never split, n: pinned)")
    ap.add_argument("--group-slacks", default="",
                    help="slacks of the on-device execution-group choice (per-query-block "
                         "tables, s chosen per KV group and query block) to add, e.g. 0.5,2")
    ap.add_argument("--out", default="prefill.json")
    args = ap.parse_args()
    methods = set(args.methods.split(","))
    alphas = [float(a) for a in args.alphas.split(",")]
    kv_splits = [int(n) for n in args.kv_splits.split(",")]
    # (s, per query block, group slack): s = G (group union), s = 1 (per-head
    # tables), s = 1 with one table per query block (the block-sparse mask
    # itself), and s chosen on the device (s = None in the results).
    variants = [(G, False, 0.0), (1, False, 0.0), (1, True, 0.0)]
    variants += [(None, True, float(x)) for x in args.group_slacks.split(",") if x]
    rt = Runtime(Hq, Hkv, D, PAGE, BLOCK, "bfloat16", "nhd")
    rows = []
    for spec in args.configs.split(","):
        B, C, L = map(int, spec.split(":"))
        t0 = time.time()
        pt = Point(rt, B, C, L, seed=B * 7 + C + L)
        here = []  # (row, last chunk output)

        def add(method, ms, out, **extra):
            row = {"method": method, "B": B, "C": C, "L": L, "prefill_ms": ms,
                   "last_chunk_ms": None, "tflops": None}
            row.update(extra)
            here.append((row, out))

        if "sdpa" in methods:
            add("sdpa_flash", *run_sdpa(pt))
        for alpha in alphas:
            if "compact" in methods:
                for splits, (s, per_qb, slack) in ((n, v) for n in kv_splits for v in variants):
                    rt.set_kv_splits(splits)
                    plan = ChunkedPrefill(rt, B, pt.Kb, exec_group_size=s or 1, alpha=alpha,
                                          sink=SINK, window=WINDOW, per_query_block=per_qb,
                                          max_chunk_len=C, group_slack=slack)
                    run_ours(pt, plan)  # warm-up (and fills the cache / pooled keys)
                    ms, out = run_ours(pt, plan)
                    table, counts = plan.tables()
                    extra = {"group_slack": slack} if s is None else {}
                    add("compact", ms, out, s=s, per_query_block=per_qb, alpha=alpha,
                        kv_splits=splits, density_union=float(counts.double().mean() / pt.Kb),
                        **extra)
            if "flex_sparse" in methods:
                # pooled keys are those of the whole prompt now; the chunk's
                # scores only read blocks up to the chunk (causal), which are final.
                ms, out, density = run_flex(rt, pt, True, alpha)
                add("flex_sparse", ms, out, alpha=alpha, density_mask=density)
        if "compact_dense" in methods:
            for splits in kv_splits:
                rt.set_kv_splits(splits)
                run_ours_dense(rt, pt)  # warm-up
                add("compact_dense", *run_ours_dense(rt, pt), kv_splits=splits)
        if "flex_dense" in methods:
            ms, out, _ = run_flex(rt, pt, sparse=False)
            add("flex_dense", ms, out)
        ref = here[0][1] if here and here[0][0]["method"] == "sdpa_flash" else None
        for row, out in here:
            if row["method"] == "compact":
                row["density_mask"] = next(
                    (r["density_mask"] for r, _ in here
                     if r["method"] == "flex_sparse" and r["alpha"] == row["alpha"]), None)
            if ref is not None and row["method"] != "sdpa_flash":
                o = out.transpose(1, 2) if out.shape[1] != Hq else out
                row["err_vs_dense"] = rel(o, ref)
            rows.append(row)
        line = f"B={B} C={C} L={L}:"
        for row, _ in here:
            name = row["method"] + (f"_s{row['s']}" if row.get("s") else "")
            name += f"_adaptive{row['group_slack']}" if "group_slack" in row else ""
            name += "_qb" if row.get("per_query_block") else ""
            name += f"/kv{row['kv_splits']}" if len(kv_splits) > 1 and "kv_splits" in row else ""
            name += f"@{row['alpha']}" if "alpha" in row else ""
            line += f" {name}={row['prefill_ms']:.2f}ms"
            if "density_union" in row:
                line += f"(union {row['density_union']:.3f})"
            if "density_mask" in row and row["method"] == "flex_sparse":
                line += f"(mask {row['density_mask']:.3f})"
            if "err_vs_dense" in row:
                line += f"[err {row['err_vs_dense']:.3f}]"
        print(line + f" ({time.time() - t0:.0f}s)", flush=True)
        del pt, here
        torch.cuda.empty_cache()
    result = {**run_header(),
              "workload": {"name": "planted_retrieval", "Hq": Hq, "Hkv": Hkv, "D": D,
                           "page": PAGE, "block": BLOCK, "hot_frac": 0.04, "signal": 8.0,
                           "alpha": alphas, "sink": SINK, "window": WINDOW,
                           "what": "whole chunked prefill of one layer; ours includes append, "
                                   "pooling and selection, the peers only attention; errors "
                                   "are of the last chunk against dense SDPA flash"},
              "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
