"""Attention fidelity on structured inputs (bench/structured.py) against
whole-prefill time, every method in one process on one GPU.

Per level and (B, C, L), the last chunk's output of each method against
dense fp32 attention: relative error, attention-mass recall and density of
the keys it lets each row read, needle retrieval (rows that need a needle:
cosine of the output with the needle's value direction > THRESH); and the
whole chunked prefill's attention time (CUDA events). Methods:

* sdpa_flash: dense SDPA flash;
* compact: ours, the plan (append, pooling, selection, attention) with
  s = 1 and a table per query block, s = 2 and s = 4, at several alphas;
* flex_sparse: FlexAttention block-sparse on our selector's mask (mask
  given, selection not timed); its fidelity is that of the mask (fp32);
* quoka: QUOKA-style token selection (bench/baselines.py), explicit gather
  and SDPA flash, selection included in its time.

    python bench/fidelity.py --out fidelity.json [--levels easy,medium,hard]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))

import prefill_bench as pb  # noqa: E402
from baselines import (coverage, dense_attention, gathered_attention,  # noqa: E402
                       mask_attention, quoka_select, token_keep)
from compact_attention import ChunkedPrefill, Runtime  # noqa: E402
from structured import LEVELS, structured_inputs  # noqa: E402

Hq, Hkv, D, BLOCK, G = pb.Hq, pb.Hkv, pb.D, pb.BLOCK, pb.G
ALPHAS = "0.01,0.06,0.2,0.5"
GROUPS = "1qb,2,4"          # execution group sizes; "qb": a table per query block
THRESH = 0.5                # needle retrieved: cosine of the output with its value > THRESH
QUERY_FRAC = KV_FRAC = 0.25


def table_keep(table, counts, s):
    """Block keep mask [B, Hq, 1 or Qb, Kb] of the plan's tables (a table
    serves its s heads, and all query blocks or one)."""
    B, R, Kb = table.shape
    valid = torch.arange(Kb, device=table.device) < counts[..., None].long()
    keep = torch.zeros((B, R, Kb), dtype=torch.int32, device=table.device)
    keep.scatter_add_(2, table.long().clamp(0, Kb - 1), valid.int())
    E = Hq // s
    return (keep > 0).view(B, E, R // E, Kb).repeat_interleave(s, dim=1)


def run_quoka(pt):
    """Whole prefill, QUOKA-style: per chunk select, gather, SDPA flash."""
    idx = out = None
    torch.cuda.synchronize()
    with pb.Timer() as t:
        for i, (c0, c) in enumerate(pt.chunks):
            idx = quoka_select(pt.cq[i], pt.k, c0, QUERY_FRAC, KV_FRAC)
            out = gathered_attention(pt.cq[i], pt.k, pt.v, c0, idx, exact=False)
    return t.total, out, idx


class LastChunk:
    """The last chunk's reference and metrics."""

    def __init__(self, pt, truth):
        self.pt = pt
        self.c0, self.c = pt.chunks[-1]
        self.q = pt.cq[-1]
        self.ref = dense_attention(self.q, pt.k, pt.v, self.c0)
        need = truth["need"][:, self.c0:self.c0 + self.c]
        self.free = need < 0  # rows that need no needle: the background
        self.rows = (need >= 0).nonzero(as_tuple=True)
        b, _, h = self.rows
        self.dirs = truth["needle_value"][b, h // G, need[self.rows]]

    def metrics(self, out, keep=None, block=1):
        """err_vs_dense (all rows, and the rows that need no needle), recall,
        density and needle retrieval of an output [B, C, Hq, D] and the keep
        mask that produced it."""
        m = {"err_vs_dense": pb.rel(out, self.ref),
             "err_background": pb.rel(out[self.free], self.ref[self.free])}
        if keep is not None:
            m["recall"], m["density"] = coverage(self.q, self.pt.k, self.c0, keep, block)
        if len(self.dirs):
            cos = F.cosine_similarity(out[self.rows].float(), self.dirs, dim=-1)
            m["needle_acc"] = float((cos > THRESH).float().mean())
            m["needle_cos"] = float(cos.mean())
        return m


def measure(rt, level, B, C, L, alphas, groups, seed):
    q, k, v, truth = structured_inputs(B, L, Hq, Hkv, D, BLOCK, level, seed, "cuda", chunk=C)
    pt = pb.Point(rt, B, C, L, seed, inputs=(q, k, v))
    last = LastChunk(pt, truth)
    rows = []

    def add(method, ms, out, keep=None, block=1, **extra):
        row = {"method": method, "level": level, "B": B, "C": C, "L": L, "prefill_ms": ms,
               "last_chunk_ms": None, "tflops": None}
        row.update(extra)
        row.update(last.metrics(out, keep, block))
        rows.append(row)

    pb.run_sdpa(pt)  # warm-up
    ms, out = pb.run_sdpa(pt)
    add("sdpa_flash", ms, out.transpose(1, 2), recall=1.0, density=1.0)
    for alpha in alphas:
        for s, per_qb in groups:
            plan = ChunkedPrefill(rt, B, pt.Kb, exec_group_size=s, alpha=alpha, sink=pb.SINK,
                                  window=pb.WINDOW, per_query_block=per_qb, max_chunk_len=C)
            pb.run_ours(pt, plan)  # warm-up (and fills the cache / pooled keys)
            ms, out = pb.run_ours(pt, plan)
            table, counts = plan.tables()
            add("compact", ms, out, table_keep(table, counts, s), BLOCK, s=s,
                per_query_block=per_qb, alpha=alpha,
                density_union=float(counts.double().mean() / pt.Kb))
        # FlexAttention on the selector's mask: time from its run, fidelity of
        # the mask in fp32 (and the executed output against that).
        ms, out, density = pb.run_flex(rt, pt, True, alpha)
        mask = pb.selector_mask(rt, pt, last.c0, last.c, alpha).bool()
        mask &= pb.causal_selection(pt, last.c0, last.c)
        exact = mask_attention(last.q, pt.k, pt.v, last.c0, mask, BLOCK)
        add("flex_sparse", ms, exact, mask, BLOCK, alpha=alpha, density_mask=density,
            err_exec=pb.rel(out.transpose(1, 2), exact))
    run_quoka(pt)  # warm-up
    ms, out, idx = run_quoka(pt)
    exact = gathered_attention(last.q, pt.k, pt.v, last.c0, idx)
    add("quoka", ms, exact, token_keep(idx, last.c0, last.c), 1, query_frac=QUERY_FRAC,
        kv_frac=KV_FRAC, err_exec=pb.rel(out, exact))
    return rows


def name(row):
    n = row["method"] + (f" s={row['s']}" if "s" in row else "")
    n += " qb" if row.get("per_query_block") else ""
    return n + (f" a={row['alpha']:g}" if "alpha" in row else "")


def print_table(rows):
    print(f"{'level':<7} {'B':>2} {'C':>5} {'L':>6} {'method':<22} {'prefill ms':>10} "
          f"{'density':>7} {'recall':>6} {'err':>7} {'err bg':>7} {'needle':>6} {'cos':>5}")
    for r in rows:
        needle = (f"{r['needle_acc']:>6.2f} {r['needle_cos']:>5.2f}" if "needle_acc" in r
                  else f"{'-':>6} {'-':>5}")
        print(f"{r['level']:<7} {r['B']:>2} {r['C']:>5} {r['L']:>6} {name(r):<22} "
              f"{r['prefill_ms']:>10.2f} {r['density']:>7.3f} {r['recall']:>6.3f} "
              f"{r['err_vs_dense']:>7.4f} {r['err_background']:>7.4f} {needle}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="easy,medium,hard")
    ap.add_argument("--configs", default="1:1024:32768", help="B:C:L,...")
    ap.add_argument("--alphas", default=ALPHAS)
    ap.add_argument("--groups", default=GROUPS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fidelity.json")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 references stay fp32
    alphas = [float(a) for a in args.alphas.split(",")]
    groups = [(int(g.rstrip("qb")), g.endswith("qb")) for g in args.groups.split(",")]
    rt = Runtime(Hq, Hkv, D, pb.PAGE, BLOCK, "bfloat16", "nhd")
    for s, qb in list(groups):
        if not rt.supports(s):
            print(f"s = {s}: no kernels in the library, skipped")
            groups.remove((s, qb))
    rows = []
    for level in args.levels.split(","):
        for spec in args.configs.split(","):
            B, C, L = map(int, spec.split(":"))
            t0 = time.time()
            here = measure(rt, level, B, C, L, alphas, groups, args.seed)
            print_table(here)
            print(f"({time.time() - t0:.0f}s)", flush=True)
            rows += here
            torch.cuda.empty_cache()
    result = {**pb.run_header(),
              "workload": {"name": "structured", "Hq": Hq, "Hkv": Hkv, "D": D,
                           "page": pb.PAGE, "block": BLOCK, "levels": LEVELS,
                           "sink": pb.SINK, "window": pb.WINDOW, "needle_threshold": THRESH,
                           "what": "last chunk against dense fp32 attention: relative error "
                                   "(all rows; err_background: rows that need no needle), "
                                   "recall and density of the keys read, needle retrieval; "
                                   "prefill_ms: the whole chunked prefill (ours and QUOKA "
                                   "include selection, FlexAttention is given the mask)"},
              "config": {"levels": args.levels.split(","), "configs": args.configs,
                         "alphas": alphas, "groups": args.groups, "seed": args.seed,
                         "quoka": {"query_frac": QUERY_FRAC, "kv_frac": KV_FRAC}},
              "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
