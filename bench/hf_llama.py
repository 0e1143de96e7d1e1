"""A real architecture end to end: a randomly initialised LLaMA-3-style model
(Hugging Face transformers' LlamaForCausalLM with LLaMA-3.1-8B's layer shape:
hidden 4096, 32 query / 8 KV heads of 128, MLP 14336; --layers 4, vocab 32000,
rope theta 500000, bf16, seeded) runs chunked prefill with our kernels as its
attention function (compact_attention.hf), on one GPU:

    python bench/hf_llama.py --out hf-llama.json

(a) Check (--check, default 1:8192,2:8192 as B:L; chunks of --chunk 1024).
    Random prompts (seeded). The reference is the fp32 copy of the model, its
    own forward over the whole prompt (attention "sdpa", no chunking);
    compared: the last chunk's logits [B, C, V] (relative Frobenius error,
    max |diff|, argmax agreement).
      hf_bf16  the bf16 model's own unchunked forward: the bf16 noise floor
               (with random weights and 4 layers of hidden 4096 it is above
               1e-2, and the top-2 logits are often close).
      dense    our plan with every block selected: asserted within bf16
               tolerance, i.e. rel err <= max(--tol, 1.25 x hf_bf16's) and
               argmax agreement >= min(--min-agree, hf_bf16's - 1 point)
               (the JSON records both bounds); also compared to hf_bf16.
      sdpa     dense SDPA flash per chunk over contiguous K/V (hf.sdpa_baseline)
      compact  s = G and s = 1 with per-query-block tables, alpha --alphas:
               informational, also against dense's logits.
(b) Speed (--speed, default 1:65536,4:32768). Per method the whole prefill of
    a random prompt with logits of the last token only: attention_ms is the
    sum of CUDA-event times around every attention call of every layer (ours:
    K/V append, key pooling, selection and attention; sdpa: the K/V copy into
    its contiguous cache and SDPA flash), wall_ms the whole prefill (host
    clock, synchronised); median of --reps after a warm-up. Speedups are
    against the sdpa row. With random weights attention is close to uniform,
    so the selector keeps most blocks (see density): the compact rows measure
    the plan's cost at that density, not the sparsity of a trained model.

JSON (--out): commit ($COMPACT_COMMIT), date, gpu, versions (torch, CUDA,
transformers), the model, and the rows of both parts. Exits non-zero when the
check fails (after writing the JSON).
"""

import argparse
import copy
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from compact_attention import Runtime, hf  # noqa: E402

HIDDEN, HQ, HKV, D, MLP, VOCAB, THETA = 4096, 32, 8, 128, 14336, 32000, 500000.0
G = HQ // HKV


def methods(alphas):
    """name -> ChunkedPrefillSession arguments."""
    out = {"sdpa": dict(method="baseline", baseline=hf.sdpa_baseline),
           "dense": dict(method="dense")}
    for a in alphas:
        out[f"compact_s{G}@{a}"] = dict(method="compact", alpha=a, exec_group_size=G)
        out[f"compact_s1_pqb@{a}"] = dict(method="compact", alpha=a, exec_group_size=1,
                                          per_query_block=True)
    return out


def prompt(B, L, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randint(0, VOCAB, (B, L), generator=g, device="cuda")


def compare(a, b):
    a, b = a.float(), b.float()
    return {"rel_err": float((a - b).norm() / b.norm()), "max_abs": float((a - b).abs().max()),
            "argmax_agree": float((a.argmax(-1) == b.argmax(-1)).float().mean())}


def last_logits(model, ids, keep):
    """The model's own unchunked forward: logits of the last `keep` tokens."""
    with torch.no_grad():
        hidden = model.base_model(input_ids=ids, use_cache=False).last_hidden_state
        return model.get_output_embeddings()(hidden[:, -keep:]).float()


def check(model, model32, rt, B, L, args):
    """Part (a) for one B:L; returns (rows, passed). The reference is the fp32
    model's unchunked forward; the row "hf_bf16" (the bf16 model's own
    unchunked forward) is the bf16 noise floor that dense must stay within."""
    ids = prompt(B, L, seed=L + B)
    keep = L - (L - 1) // args.chunk * args.chunk  # the last chunk's length
    ref = last_logits(model32, ids, keep)
    logits = {"hf_bf16": last_logits(model, ids, keep)}
    rows = [{"B": B, "L": L, "method": "hf_bf16", **compare(logits["hf_bf16"], ref)}]
    for name, kw in methods(args.alphas).items():
        session = hf.ChunkedPrefillSession(model, B, L, args.chunk, runtime=rt, **kw)
        logits[name] = session.prefill(ids).logits
        row = {"B": B, "L": L, "method": name, **compare(logits[name], ref),
               "vs_hf_bf16": compare(logits[name], logits["hf_bf16"])}
        if name.startswith("compact"):
            row["vs_dense"] = compare(logits[name], logits["dense"])
            row["density"] = session.density()
        rows.append(row)
        del session
    floor, dense = rows[0], next(r for r in rows if r["method"] == "dense")
    dense["max_rel_err"] = max(args.tol, 1.25 * floor["rel_err"])
    dense["min_agree"] = min(args.min_agree, floor["argmax_agree"] - 0.01)
    passed = (dense["rel_err"] <= dense["max_rel_err"]
              and dense["argmax_agree"] >= dense["min_agree"])
    dense["passed"] = passed
    del logits, ref
    torch.cuda.empty_cache()
    return rows, passed


def speed(model, rt, B, L, args):
    """Part (b) for one B:L."""
    ids = prompt(B, L, seed=L * 3 + B)
    rows, last = [], {}
    for name, kw in methods(args.alphas).items():
        session = hf.ChunkedPrefillSession(model, B, L, args.chunk, runtime=rt, **kw)
        session.prefill(ids[:, :min(L, 2 * args.chunk)], logits="none")  # warm-up
        runs = []
        for _ in range(args.reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = session.prefill(ids, logits="last", timing=True)
            torch.cuda.synchronize()
            runs.append(((time.perf_counter() - t0) * 1e3, out))
        wall, out = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        last[name] = out.logits
        rows.append({"B": B, "L": L, "method": name, "attention_ms": out.attention_ms,
                     "wall_ms": wall, "density": session.density()})
        del session, runs
        torch.cuda.empty_cache()
    ref = next(r for r in rows if r["method"] == "sdpa")
    for r in rows:
        r["attention_speedup"] = ref["attention_ms"] / r["attention_ms"]
        r["wall_speedup"] = ref["wall_ms"] / r["wall_ms"]
        r["last_token_vs_sdpa"] = compare(last[r["method"]], last["sdpa"])["rel_err"]
    return rows


def configs(text):
    return [tuple(map(int, c.split(":"))) for c in text.split(",") if c and c != "none"]


def fmt(value, spec):
    return "" if value is None else format(value, spec)


def print_check(rows):
    print("vs the fp32 model (unchunked); vs hf_bf16 = the bf16 model's own unchunked forward")
    print(f"{'B':>2} {'L':>6} {'method':<22} {'rel_err':>8} {'max_abs':>8} {'argmax':>7} "
          f"{'vs bf16':>8} {'vs dense':>8} {'density':>7}")
    for r in rows:
        vs = fmt(r.get("vs_dense", {}).get("rel_err"), ".2e")
        bf = fmt(r.get("vs_hf_bf16", {}).get("rel_err"), ".2e")
        print(f"{r['B']:>2} {r['L']:>6} {r['method']:<22} {r['rel_err']:>8.2e} "
              f"{r['max_abs']:>8.3f} {r['argmax_agree']:>7.4f} {bf:>8} {vs:>8} "
              f"{fmt(r.get('density'), '.3f'):>7}")


def print_speed(rows):
    print(f"{'B':>2} {'L':>6} {'method':<22} {'attn ms':>9} {'x sdpa':>7} {'wall ms':>9} "
          f"{'x sdpa':>7} {'density':>7} {'err vs sdpa':>11}")
    for r in rows:
        print(f"{r['B']:>2} {r['L']:>6} {r['method']:<22} {r['attention_ms']:>9.1f} "
              f"{r['attention_speedup']:>6.2f}x {r['wall_ms']:>9.1f} {r['wall_speedup']:>6.2f}x "
              f"{fmt(r['density'], '.3f'):>7} {r['last_token_vs_sdpa']:>11.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--check", default="1:8192,2:8192", help="B:L,... ('none': skip)")
    ap.add_argument("--speed", default="1:65536,4:32768", help="B:L,... ('none': skip)")
    ap.add_argument("--alphas", default="0.06", help="selector thresholds of the compact rows")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-2)
    ap.add_argument("--min-agree", type=float, default=0.99)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="hf-llama.json")
    args = ap.parse_args()
    args.alphas = [float(a) for a in args.alphas.split(",")]
    if not torch.cuda.is_available():
        sys.exit("bench/hf_llama.py: needs a CUDA GPU (sm_90a)")
    import transformers
    checks, speeds = configs(args.check), configs(args.speed)
    longest = max(L for _, L in checks + speeds)
    t0 = time.time()
    model = hf.random_llama(args.layers, HIDDEN, HQ, HKV, D, MLP, VOCAB, longest, THETA,
                            seed=args.seed)
    model32 = copy.deepcopy(model).float() if checks else None  # the check's reference
    rt = Runtime(HQ, HKV, D, hf.PAGE, hf.BLOCK, "bfloat16", "nhd")
    print(f"model: {args.layers} layers, hidden {HIDDEN}, heads {HQ}/{HKV} x {D}, MLP {MLP}, "
          f"vocab {VOCAB}, bf16, random (seed {args.seed}); transformers "
          f"{transformers.__version__}; chunk {args.chunk} ({time.time() - t0:.0f}s)", flush=True)
    check_rows, passed = [], True
    for B, L in checks:
        rows, ok = check(model, model32, rt, B, L, args)
        check_rows += rows
        passed &= ok
    if check_rows:
        print_check(check_rows)
    del model32
    torch.cuda.empty_cache()
    speed_rows = []
    for B, L in speeds:
        speed_rows += speed(model, rt, B, L, args)
        print(f"(speed B={B} L={L} done, {time.time() - t0:.0f}s)", flush=True)
    if speed_rows:
        print_speed(speed_rows)
    result = {"commit": os.environ.get("COMPACT_COMMIT", "unknown"),
              "date": datetime.date.today().isoformat(),
              "gpu": torch.cuda.get_device_name(),
              "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                           "transformers": transformers.__version__},
              "model": {"class": "LlamaForCausalLM", "weights": f"random, seed {args.seed}",
                        "layers": args.layers, "hidden": HIDDEN, "q_heads": HQ, "kv_heads": HKV,
                        "head_dim": D, "intermediate": MLP, "vocab": VOCAB, "rope_theta": THETA,
                        "dtype": "bfloat16"},
              "chunk": args.chunk, "alphas": args.alphas, "tol": args.tol,
              "check": check_rows, "speed": speed_rows, "check_passed": passed,
              "seconds": time.time() - t0}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} ({time.time() - t0:.0f}s)")
    if not passed:
        sys.exit("bench/hf_llama.py: check FAILED (dense vs the fp32 model, beyond the bf16 "
                 "model's own error)")


if __name__ == "__main__":
    main()
