"""Tensor-parallel chunked prefill of one LLaMA-3.1-8B-shaped attention layer
(32 query / 8 KV heads, D = 128, hidden 4096) over N GPUs with
torch.distributed (NCCL), against dense SDPA flash under the same TP:

    NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc-per-node=2 bench/tp_prefill.py \\
        --configs 8:1024:131072 --out tp-prefill.json

(`TP=2 bench/gpu_run.sh tp` on the GPU machine). N must divide the 8 KV heads
and the kernel library must hold the per-rank configuration (Hq/N, Hkv/N);
N = 1 works too. NCCL's NVLink multicast (NVLS) stays off: the launcher should
export NCCL_NVLS_ENABLE=0, and the script sets it (setdefault) before the
process group is made.

Sharding, Megatron style. The column-parallel QKV projection gives rank r the
query heads [r Hq/N, (r+1) Hq/N) and the KV heads [r Hkv/N, (r+1) Hkv/N): with
contiguous ranges every query head's KV head is on its rank. The QKV GEMM is
not run: every rank generates the standard workload (planted_retrieval, same
seed) for all heads in fp32, checks its checksums against the other ranks',
keeps its own heads in bf16 and frees the rest. Each rank runs attention on
its heads (a Runtime for Hq/N / Hkv/N heads, its own paged cache and pooled
keys); the output projection Wo [Hq D, hidden] (random, seeded, scaled by
1 / sqrt(Hq D)) is row-parallel: rank r holds the rows of its heads, computes
its partial out_r Wo_r in bf16, and an all-reduce (sum, bf16) gives every rank
the chunk's y [B, C, hidden].

Methods, each the whole prefill (every chunk of C tokens from 0 to L), each
chunk followed by o_proj and the all-reduce:
  sdpa            dense SDPA flash per chunk on contiguous per-rank K/V (the
                  call of prefill_bench.run_sdpa; q is the chunk's rows
                  [B, C, H, D] viewed as [B, H, C, D], as an engine hands it)
  compact_s1_pqb  our plan, s = 1, one table per query head and query block
  compact_s4      our plan, s = G = 4 (the group union)
Ours includes the K/V append, the key pooling and the selection; SDPA is only
attention (as in prefill_bench.py).

Timing. Before each run: dist.barrier() and torch.cuda.synchronize(). One
pass over all chunks with CUDA events recorded between the three parts of
every chunk (no host synchronisation inside the loop, so nothing is timed
that a real run would not do):
  attention_ms  sum over chunks of the attention call
  oproj_ms      sum of the o_proj GEMMs
  allreduce_ms  sum of the all-reduces, *including the wait for the slower
                rank* (the fastest rank's figure is the nearest to the pure
                transfer time)
  layer_ms      from the first event of the first chunk to the last of the
                last: the whole layer, any host launch gaps included
total_ms is the max over ranks of layer_ms (the layer is done when its last
rank is); speedup_vs_sdpa is sdpa's total_ms over the method's. One warm-up
run, then --reps runs; the run with the median total_ms is reported.

Correctness (on rank 0; the other ranks wait at a barrier):
  * --check-config (default 2:512:8192): y of every chunk, after the
    all-reduce, against a single-GPU run of the whole layer (a Runtime for
    32 / 8 heads, the same method, the full o_proj, no all-reduce); the
    relative error sqrt(sum ||y_tp - y_1||^2 / sum ||y_1||^2) over all chunks
    must be <= --tol (1e-2). Also against dense attention in fp32 (bf16
    inputs, causal with the chunk's offset, GQA expanded) + o_proj in fp32:
    the selection's error, reported and not asserted.
  * every timed config: the same TP-vs-single-GPU error on its last chunk.
  --check-config none skips both. With N = 1 the TP run and the reference are
  the same computation.
"""

import argparse
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast off, before NCCL starts

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))

from compact_attention import ChunkedPrefill, Runtime  # noqa: E402
from prefill_bench import ALPHA, BLOCK, D, PAGE, SINK, WINDOW  # noqa: E402
from workload import PagedCache, planted_retrieval  # noqa: E402

HQ, HKV, HIDDEN = 32, 8, 4096
G = HQ // HKV
WO_SEED = 4096
# name -> ChunkedPrefill arguments (None: dense SDPA flash)
METHODS = {"sdpa": None,
           "compact_s1_pqb": {"exec_group_size": 1, "per_query_block": True},
           "compact_s4": {"exec_group_size": G, "per_query_block": False}}


# Runtime settings from the environment that change what is timed (recorded).
RUNTIME_ENV = ("COMPACT_RT_CHECKS", "COMPACT_RT_MATRIX_PATH")


def fail(message):
    raise SystemExit(f"tp_prefill [rank {os.environ.get('RANK', '0')}]: {message}")


def config_key(q_heads, kv_heads):
    return f"q{q_heads}_kv{kv_heads}_d{D}_p{PAGE}_b{BLOCK}_bf16_nhd"


def runtime(q_heads, kv_heads, methods, what):
    """A Runtime for q_heads / kv_heads that has the kernels of every method."""
    rt = Runtime(q_heads, kv_heads, D, PAGE, BLOCK, "bfloat16", "nhd")
    for name in methods:
        if METHODS[name] and not rt.supports(METHODS[name]["exec_group_size"]):
            fail(f"the kernel library has no kernels for {config_key(q_heads, kv_heads)} with "
                 f"s = {METHODS[name]['exec_group_size']} (method {name}, {what}); add it to "
                 "defaultLibrary() in lib/Codegen/KernelLibrary.cpp and rebuild the library, "
                 "or leave the method out with --methods")
    return rt


def gather(obj):
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class Shard:
    """Rank `rank` of `world`'s heads of the standard workload: per-chunk
    contiguous q / k / v rows for the plan, contiguous [B, Hkv/N, L, D] K/V
    for SDPA, a paged cache, pooled keys and each chunk's ctx_lens."""

    def __init__(self, B, C, L, seed, rank, world, sdpa=True, keep_fp32=False):
        nq, nkv = HQ // world, HKV // world
        hq, hkv = slice(rank * nq, (rank + 1) * nq), slice(rank * nkv, (rank + 1) * nkv)
        self.B, self.C, self.L, self.nq, self.nkv = B, C, L, nq, nkv
        q, k, v = planted_retrieval(B, L, HQ, HKV, D, BLOCK, seed=seed, dtype=torch.float32)
        self.checksum = [float(t.sum()) for t in (q, k, v)]
        self.chunks = [(c0, min(C, L - c0)) for c0 in range(0, L, C)]

        def rows(t, heads):
            return [t[:, c0:c0 + c, heads].to(torch.bfloat16).contiguous()
                    for c0, c in self.chunks]

        self.cq, self.ck, self.cv = rows(q, hq), rows(k, hkv), rows(v, hkv)
        self.kt = self.vt = None
        if sdpa:
            self.kt, self.vt = (t[:, :, hkv].transpose(1, 2).to(torch.bfloat16).contiguous()
                                for t in (k, v))
        self.fp32 = (q, k, v) if keep_fp32 else None
        del q, k, v
        torch.cuda.empty_cache()
        self.cache = PagedCache(B, L, nkv, D, PAGE, seed=seed)
        self.Kb = -(-L // BLOCK)
        self.pooled = torch.zeros((B, nkv, self.Kb, D), dtype=torch.bfloat16, device="cuda")
        self.lens = [torch.full((B,), c0 + c, dtype=torch.int32, device="cuda")
                     for c0, c in self.chunks]


def attention(name, rt, wl):
    """attend(i): chunk i's attention output [B, c, heads, D] by `name`; and
    the plan (None for SDPA)."""
    if METHODS[name] is None:
        def attend(i):
            c0, c = wl.chunks[i]
            return torch.ops.aten._scaled_dot_product_flash_attention(
                wl.cq[i].transpose(1, 2), wl.kt[:, :, :c0 + c], wl.vt[:, :, :c0 + c], 0.0,
                True)[0].transpose(1, 2)
        return attend, None
    plan = ChunkedPrefill(rt, wl.B, wl.Kb, alpha=ALPHA, sink=SINK, window=WINDOW,
                          max_chunk_len=wl.C, **METHODS[name])

    def attend(i):
        return plan(wl.cq[i], wl.ck[i], wl.cv[i], wl.cache.k, wl.cache.v, wl.cache.page_table,
                    wl.lens[i], wl.pooled, max_prefix_len=wl.chunks[i][0])
    return attend, plan


def run_layer(wl, attend, wo, tp, keep=()):
    """One whole prefill of the layer: per chunk attention, o_proj and (with
    `tp` and more than one rank) the all-reduce. Returns the times (ms, see the
    module docstring) and y [B, c, hidden] of the chunks in `keep`."""
    reduce = tp and dist.get_world_size() > 1
    events = [[torch.cuda.Event(enable_timing=True) for _ in range(4)] for _ in wl.chunks]
    kept = {}
    if tp:
        dist.barrier()
    torch.cuda.synchronize()
    for i, ((c0, c), ev) in enumerate(zip(wl.chunks, events)):
        ev[0].record()
        out = attend(i)
        ev[1].record()
        y = out.reshape(wl.B * c, wl.nq * D) @ wo
        ev[2].record()
        if reduce:
            dist.all_reduce(y)
        ev[3].record()
        if i in keep:
            kept[i] = y.view(wl.B, c, HIDDEN)
    torch.cuda.synchronize()
    part = [sum(ev[j].elapsed_time(ev[j + 1]) for ev in events) for j in range(3)]
    return {"attention_ms": part[0], "oproj_ms": part[1], "allreduce_ms": part[2],
            "layer_ms": events[0][0].elapsed_time(events[-1][3])}, kept


def time_method(ctx, wl, name, keep):
    """Warm-up, then ctx.reps timed runs; the per-rank times of the run with
    the median total, and y of the chunks in `keep` (last run)."""
    attend, plan = attention(name, ctx.rt, wl)
    run_layer(wl, attend, ctx.wo, True)
    runs, kept = [], {}
    for _ in range(ctx.reps):
        times, kept = run_layer(wl, attend, ctx.wo, True, keep)
        if plan is not None:
            _, counts = plan.tables()
            times["density_last_chunk"] = float(counts.double().mean()) / wl.Kb
        runs.append(gather(times))
    totals = [max(r["layer_ms"] for r in per_rank) for per_rank in runs]
    pick = sorted(range(len(runs)), key=totals.__getitem__)[len(runs) // 2]
    per_rank = runs[pick]
    return {"per_rank": per_rank, "total_ms": totals[pick],
            "attention_ms": max(r["attention_ms"] for r in per_rank),
            "allreduce_ms_min": min(r["allreduce_ms"] for r in per_rank)}, kept


def rel_err(y, ref):
    """sqrt(sum ||y - ref||^2 / sum ||ref||^2) over the chunks of `ref`."""
    num = den = 0.0
    for i, r in ref.items():
        r = r.float()
        num += float((y[i].float() - r).pow(2).sum())
        den += float(r.pow(2).sum())
    return math.sqrt(num / den)


def dense_chunk(ref, i, wo):
    """y of chunk i in fp32: causal attention of the chunk over the prefix and
    itself (every head, GQA expanded; bf16-rounded inputs), then o_proj."""
    q, k, v = ref.fp32
    c0, c = ref.chunks[i]
    end = c0 + c

    def heads(t):  # [B, n, H, D] -> [B, H, n, D], bf16-rounded
        return t.to(torch.bfloat16).float().transpose(1, 2)

    kx, vx = (heads(t[:, :end]).repeat_interleave(G, dim=1) for t in (k, v))
    mask = (torch.arange(end, device="cuda")[None, :]
            <= torch.arange(c0, end, device="cuda")[:, None])
    o = F.scaled_dot_product_attention(heads(q[:, c0:end]), kx, vx, attn_mask=mask)
    return (o.transpose(1, 2).reshape(ref.B * c, HQ * D) @ wo).view(ref.B, c, HIDDEN)


def check_one_gpu(ctx, B, C, L, seed, checksum, tp_y, keep, dense):
    """Rank 0: y of every method on the chunks in `keep` against a single-GPU
    run of the whole layer (and, with `dense`, against dense fp32); the other
    ranks wait. Returns the errors (None off rank 0)."""
    result = None
    if ctx.rank == 0:
        ref = Shard(B, C, L, seed, 0, 1, sdpa="sdpa" in tp_y, keep_fp32=dense)
        if ref.checksum != checksum:
            fail(f"the single-GPU workload differs from the TP one at B={B} C={C} L={L} "
                 f"(checksums {ref.checksum} vs {checksum})")
        yd = {i: dense_chunk(ref, i, ctx.wo_fp32) for i in keep} if dense else None
        result = {"B": B, "C": C, "L": L,
                  "chunks": "all" if len(keep) == len(ref.chunks) else sorted(keep),
                  "methods": {}}
        for name, y in tp_y.items():
            attend, _ = attention(name, ctx.ref_rt, ref)
            _, y1 = run_layer(ref, attend, ctx.wo_ref, False, keep)
            errs = {"rel_err_tp_vs_1gpu": rel_err(y, y1)}
            if dense:
                errs["rel_err_tp_vs_dense_fp32"] = rel_err(y, yd)
                errs["rel_err_1gpu_vs_dense_fp32"] = rel_err(y1, yd)
            result["methods"][name] = errs
        del ref, yd
        torch.cuda.empty_cache()
    dist.barrier()
    return result


def run_config(ctx, B, C, L, check_all=False):
    """Times every method on (B, C, L) and checks its last chunk against one
    GPU; with `check_all` (the check config), no timing, and every chunk is
    checked, against dense fp32 too. Returns (timing entry, check)."""
    seed = B * 7 + C + L
    t0 = time.time()
    wl = Shard(B, C, L, seed, ctx.rank, ctx.world, sdpa="sdpa" in ctx.methods)
    sums = gather(wl.checksum)
    if any(s != sums[0] for s in sums):
        fail(f"the ranks generated different workloads at B={B} C={C} L={L} (checksums {sums}); "
             "the shards would not be one layer")
    checksum = wl.checksum
    keep = set(range(len(wl.chunks))) if check_all else {len(wl.chunks) - 1}
    entry = {"B": B, "C": C, "L": L, "chunks": len(wl.chunks), "methods": {}}
    tp_y = {}
    for name in ctx.methods:
        if check_all:
            _, tp_y[name] = run_layer(wl, attention(name, ctx.rt, wl)[0], ctx.wo, True, keep)
        else:
            entry["methods"][name], tp_y[name] = time_method(ctx, wl, name, keep)
    base = entry["methods"].get("sdpa")
    for m in entry["methods"].values():
        if base:
            m["speedup_vs_sdpa"] = base["total_ms"] / m["total_ms"]
            m["attention_speedup_vs_sdpa"] = base["attention_ms"] / m["attention_ms"]
    del wl
    torch.cuda.empty_cache()
    check = None
    if ctx.ref_rt is not None:
        check = check_one_gpu(ctx, B, C, L, seed, checksum, tp_y, keep, dense=check_all)
    if ctx.rank == 0:
        line = f"{'check' if check_all else 'config'} B={B} C={C} L={L}:"
        for name, m in entry["methods"].items():
            line += f" {name} total={m['total_ms']:.1f}ms"
        for name, e in (check or {"methods": {}})["methods"].items():
            line += f" {name} err_tp_vs_1gpu={e['rel_err_tp_vs_1gpu']:.2e}"
        print(line + f" ({time.time() - t0:.0f}s)", flush=True)
    return entry, check


class Context:
    def __init__(self, args, methods):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.methods, self.reps = methods, args.reps
        if HKV % self.world:
            fail(f"tensor parallelism over {self.world} GPUs needs the world size to divide "
                 f"the {HKV} KV heads")
        if self.rank == 0 and os.environ.get("COMPACT_RT_CHECKS", "0") not in ("", "0"):
            print("tp_prefill: warning: COMPACT_RT_CHECKS is on; every call of ours validates "
                  "on the host (synchronises), so its times are not representative", flush=True)
        nq, nkv = HQ // self.world, HKV // self.world
        self.rt = runtime(nq, nkv, methods, f"the per-rank heads at TP{self.world}")
        self.ref_rt = None
        if args.check_config != "none":
            self.ref_rt = (self.rt if self.world == 1 else
                           runtime(HQ, HKV, methods, "the single-GPU reference of the check"))
        g = torch.Generator(device="cuda").manual_seed(WO_SEED)
        self.wo_fp32 = torch.randn((HQ * D, HIDDEN), generator=g, device="cuda") / math.sqrt(HQ * D)
        self.wo_ref = self.wo_fp32.to(torch.bfloat16)
        self.wo = self.wo_ref[self.rank * nq * D:(self.rank + 1) * nq * D].contiguous()


def parse_config(spec, flag):
    try:
        B, C, L = map(int, spec.split(":"))
    except ValueError:
        fail(f"{flag}: expected B:C:L (e.g. 8:1024:131072), got {spec!r}")
    if min(B, C, L) <= 0:
        fail(f"{flag}: B, C and L must be positive, got {spec!r}")
    return B, C, L


def report(result, failures):
    w = result["world_size"]
    print(f"\nTP{w} on {result['gpu']} (NCCL_NVLS_ENABLE={result['nccl_nvls_enable']}): whole "
          f"prefill, ms; per rank r0/../r{w - 1}; total = max over ranks of the layer")
    print(f"{'B':>2} {'C':>5} {'L':>7}  {'method':<15} {'attention':>14} {'o_proj':>12} "
          f"{'all-reduce':>12} {'layer':>14} {'total':>8} {'vs sdpa':>8}")
    for e in result["configs"]:
        for name, m in e["methods"].items():
            def per(key):
                return "/".join(f"{r[key]:.1f}" for r in m["per_rank"])
            speedup = f"{m['speedup_vs_sdpa']:.2f}x" if "speedup_vs_sdpa" in m else "-"
            print(f"{e['B']:>2} {e['C']:>5} {e['L']:>7}  {name:<15} {per('attention_ms'):>14} "
                  f"{per('oproj_ms'):>12} {per('allreduce_ms'):>12} {per('layer_ms'):>14} "
                  f"{m['total_ms']:>8.1f} {speedup:>8}")
    check = result["check"]
    for c in ([check["all_chunks"]] if check.get("all_chunks") else []) + check["last_chunk"]:
        for name, e in c["methods"].items():
            dense = "".join(f", {k[8:]} {v:.3e}" for k, v in e.items()
                            if k.endswith("dense_fp32"))
            print(f"check B={c['B']} C={c['C']} L={c['L']} chunks {c['chunks']} {name}: "
                  f"tp_vs_1gpu {e['rel_err_tp_vs_1gpu']:.3e}{dense}")
    print("check: " + ("passed" if not failures else "FAILED: " + "; ".join(failures)))


def run(args, methods):
    ctx = Context(args, methods)
    configs, last_checks, all_chunks = [], [], None
    if args.check_config != "none":
        _, all_chunks = run_config(ctx, *parse_config(args.check_config, "--check-config"),
                                   check_all=True)
    for spec in args.configs.split(","):
        entry, check = run_config(ctx, *parse_config(spec, "--configs"))
        configs.append(entry)
        if check:
            last_checks.append(check)
    if ctx.rank != 0:
        return []
    failures = [f"{name} at B={c['B']} C={c['C']} L={c['L']}: rel err "
                f"{e['rel_err_tp_vs_1gpu']:.3e} > {args.tol}"
                for c in ([all_chunks] if all_chunks else []) + last_checks
                for name, e in c["methods"].items() if not e["rel_err_tp_vs_1gpu"] <= args.tol]
    nccl = torch.cuda.nccl.version()
    result = {"commit": os.environ.get("COMPACT_COMMIT", "unknown"),
              "date": datetime.date.today().isoformat(),
              "gpu": torch.cuda.get_device_name(),
              "world_size": ctx.world,
              "nccl_nvls_enable": os.environ.get("NCCL_NVLS_ENABLE"),
              "runtime_env": {k: os.environ.get(k) for k in RUNTIME_ENV},
              "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                           "nccl": ".".join(map(str, nccl)) if isinstance(nccl, tuple)
                           else str(nccl)},
              "layer": {"Hq": HQ, "Hkv": HKV, "D": D, "hidden": HIDDEN, "page": PAGE,
                        "block": BLOCK, "alpha": ALPHA, "sink": SINK, "window": WINDOW,
                        "workload": "planted_retrieval",
                        "per_rank_heads": [HQ // ctx.world, HKV // ctx.world]},
              "what": "whole chunked prefill of one layer per rank: attention on the rank's "
                      "heads (ours includes append, pooling and selection), o_proj on its rows "
                      "of Wo, bf16 all-reduce; CUDA events per part and chunk, all-reduce time "
                      "includes the wait for the slower rank; total = max over ranks of the "
                      f"layer; median of {ctx.reps} runs after a warm-up",
              "reps": ctx.reps,
              "configs": configs,
              "check": {"tol": args.tol, "all_chunks": all_chunks, "last_chunk": last_checks,
                        "passed": not failures}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    report(result, failures)
    print(f"wrote {args.out}")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="8:1024:131072", help="B:C:L,... to time")
    ap.add_argument("--check-config", default="2:512:8192",
                    help="B:C:L checked chunk by chunk against one GPU and dense fp32; 'none' "
                         "skips every check")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-2)
    ap.add_argument("--out", default="tp-prefill.json")
    args = ap.parse_args()
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or args.reps < 1:
        ap.error(f"unknown methods {unknown} (known: {', '.join(METHODS)})" if unknown
                 else "--reps must be at least 1")
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
        os.environ.setdefault(key, value)  # plain `python bench/tp_prefill.py`: one rank
    local = int(os.environ["LOCAL_RANK"])
    if not torch.cuda.is_available() or local >= torch.cuda.device_count():
        fail(f"LOCAL_RANK {local} needs a CUDA device, but {torch.cuda.device_count()} are "
             "visible")
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local),
                            timeout=datetime.timedelta(minutes=30))
    try:
        failures = run(args, methods)
    except Exception as e:
        # torchrun stops the other ranks when this one exits.
        print(f"tp_prefill [rank {dist.get_rank()}]: {type(e).__name__}: {e}", file=sys.stderr,
              flush=True)
        raise
    dist.destroy_process_group()
    if failures:
        print("tp_prefill: the TP output differs from the single-GPU run: " + "; ".join(failures),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
