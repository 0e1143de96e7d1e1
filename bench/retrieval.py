"""A small GQA transformer that learned to retrieve, and what chunked-prefill
attention methods cost it in task accuracy.

The task is a multi-key needle in a haystack: random filler tokens with P
needles planted at random places, each one token that carries a key and a
value (its embedding is the sum of a key and a value embedding); the prompt
ends with Q questions, a query token naming one of the keys followed by the
answer token of its value. The model must predict each answer from its
query, so every question needs one needle far back in the prefix (a needle
that only that query of the chunk needs). (With the key and the value in
two adjacent tokens, i.e. associative recall, this model stayed on the
"copy some value of the context" plateau for the few minutes of training
we allow; one token per needle makes retrieval a single attention lookup.)

    python bench/retrieval.py train --out bench/retrieval/model.pt     # H200, a few minutes
    python bench/retrieval.py eval --weights bench/retrieval/model.pt --out retrieval.json

The model: 2 layers, d_model 256, 16 query / 4 KV heads of dim 128 (the
kernel library's q16_kv4_d128 configuration), RoPE, RMSNorm, SwiGLU; about
3.5 M parameters (7 MB in bf16). Evaluation runs the prompt in chunks; in
each layer the chunk's attention is one of: dense (SDPA over a contiguous
cache), ours (our chunked-prefill plan over a paged cache: s = 4 group
union, s = 1 per query block = block-sparse execution of the selector's
mask), QUOKA-style (bench/baselines.py), and the model's own unchunked
forward.
"""

import argparse
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))

FILLER, QUERIES, ANSWERS = range(0, 128), range(128, 192), range(192, 256)
KEYS = VALUES = 64
NEEDLES = range(256, 256 + KEYS * VALUES)  # needle(k, v) = 256 + k * VALUES + v


# -- the task -----------------------------------------------------------------

def recall_batch(B, L, gen, device, pairs=None, queries=None):
    """tokens [B, L] and the query positions [B, Q] whose next token is the
    answer. P needles (default L / 16, at most the 64 distinct keys) sit at
    random places of the haystack; the last 2Q tokens are Q questions
    (distinct keys, default P / 2 up to 32): query token, answer token."""
    P = pairs or min(KEYS, max(2, L // 16))
    Q = queries or max(1, min(32, P // 2))
    body = L - 2 * Q
    assert body >= P, f"L = {L} holds no {P} needles"
    tokens = torch.randint(FILLER.start, FILLER.stop, (B, L), generator=gen)
    where = torch.empty((B, Q), dtype=torch.long)
    for b in range(B):
        slots = torch.randperm(body, generator=gen)[:P]
        keys = torch.randperm(KEYS, generator=gen)[:P]
        values = torch.randint(0, VALUES, (P,), generator=gen)
        tokens[b, slots] = NEEDLES.start + keys * VALUES + values
        asked = torch.randperm(P, generator=gen)[:Q]
        at = body + 2 * torch.arange(Q)
        tokens[b, at], tokens[b, at + 1] = QUERIES.start + keys[asked], ANSWERS.start + values[asked]
        where[b] = at
    return tokens.to(device), where.to(device)


def recall_accuracy(logits, tokens, where, offset=0):
    """Fraction of queried values predicted (argmax) from logits of the
    positions [offset, offset + logits.shape[1])."""
    at = where - offset
    predicted = logits.gather(1, at[..., None].expand(-1, -1, logits.shape[-1])).argmax(-1)
    return float((predicted == tokens.gather(1, where + 1)).float().mean())


# -- the model ----------------------------------------------------------------

class Config:
    vocab, dim, layers, q_heads, kv_heads, head_dim, ffn, rope_theta = (
        256, 256, 2, 16, 4, 128, 512, 10000.0)


def rope(x, positions, theta):
    """Rotary embedding (rotate-half form) of x [B, C, H, D] at `positions` [C]."""
    D = x.shape[-1]
    freq = theta ** (-torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D)
    angle = positions.float()[:, None] * freq[None, :]
    cos, sin = (torch.cat([f, f], dim=-1)[None, :, None, :] for f in (angle.cos(), angle.sin()))
    half = torch.cat([-x[..., D // 2:], x[..., :D // 2]], dim=-1)
    return (x.float() * cos + half.float() * sin).to(x.dtype)


def causal_attention(layer, q, k, v, c0):
    """Dense causal attention of a whole sequence (training; c0 = 0)."""
    assert c0 == 0
    G = q.shape[2] // k.shape[2]
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k.repeat_interleave(G, 2),
                                               v.repeat_interleave(G, 2)))
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).transpose(1, 2)
    C = q.shape[1]
    s = (qt.float() @ kt.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(C, C, dtype=torch.bool, device=q.device).triu(1), -math.inf)
    return (s.softmax(-1) @ vt.float()).to(q.dtype).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, cfg, index):
        super().__init__()
        self.cfg, self.index = cfg, index
        self.wq = nn.Linear(cfg.dim, cfg.q_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.q_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x, positions, attend, c0):
        B, C, _ = x.shape
        cfg = self.cfg
        q = self.wq(x).view(B, C, cfg.q_heads, cfg.head_dim)
        k = self.wk(x).view(B, C, cfg.kv_heads, cfg.head_dim)
        v = self.wv(x).view(B, C, cfg.kv_heads, cfg.head_dim)
        q, k = rope(q, positions, cfg.rope_theta), rope(k, positions, cfg.rope_theta)
        return self.wo(attend(self.index, q, k, v, c0).reshape(B, C, -1).to(x.dtype))


class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * self.weight


class Block(nn.Module):
    def __init__(self, cfg, index):
        super().__init__()
        self.attn_norm, self.mlp_norm = RMSNorm(cfg.dim), RMSNorm(cfg.dim)
        self.attn = Attention(cfg, index)
        self.gate_up = nn.Linear(cfg.dim, 2 * cfg.ffn, bias=False)
        self.down = nn.Linear(cfg.ffn, cfg.dim, bias=False)

    def forward(self, x, positions, attend, c0):
        x = x + self.attn(self.attn_norm(x), positions, attend, c0)
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class RecallModel(nn.Module):
    def __init__(self, cfg=Config):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        # A needle's embedding is its key's plus its value's.
        self.needle_key = nn.Embedding(KEYS, cfg.dim)
        self.needle_value = nn.Embedding(VALUES, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.layers))
        self.norm = RMSNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab, bias=False)

    def forward(self, tokens, c0=0, attend=causal_attention):
        """Logits [B, C, vocab] of the tokens at positions [c0, c0 + C); `attend`
        (layer, q, k, v, c0) -> [B, C, Hq, D] is the attention of the chunk."""
        positions = c0 + torch.arange(tokens.shape[1], device=tokens.device)
        needle = tokens >= NEEDLES.start
        n = (tokens - NEEDLES.start).clamp(min=0)
        x = torch.where(needle[..., None],
                        self.needle_key(n // VALUES) + self.needle_value(n % VALUES),
                        self.embed(tokens.clamp(max=self.cfg.vocab - 1)))
        for block in self.blocks:
            x = block(x, positions, attend, c0)
        return self.head(self.norm(x))


# -- chunked prefill with a chosen attention ----------------------------------

class ContiguousKV:
    """Per layer contiguous K/V of the prompt so far; `fn(q, k, v, c0)` over
    keys [0, c0 + C) gives the chunk's attention (dense by default)."""

    def __init__(self, cfg, B, L, device, fn=None):
        shape = (cfg.layers, B, L, cfg.kv_heads, cfg.head_dim)
        self.k = torch.empty(shape, dtype=torch.bfloat16, device=device)
        self.v = torch.empty_like(self.k)
        self.fn = fn or dense_chunk_attention

    def __call__(self, layer, q, k, v, c0):
        end = c0 + q.shape[1]
        self.k[layer, :, c0:end], self.v[layer, :, c0:end] = k, v
        return self.fn(q, self.k[layer, :, :end], self.v[layer, :, :end], c0)


def dense_chunk_attention(q, k, v, c0):
    """Causal attention of the chunk at offset c0 over keys [0, c0 + C)."""
    C, end = q.shape[1], k.shape[1]
    G = q.shape[2] // k.shape[2]
    allowed = (torch.arange(end, device=q.device)[None, :]
               <= c0 + torch.arange(C, device=q.device)[:, None])
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k.repeat_interleave(G, 2),
                                               v.repeat_interleave(G, 2)))
    return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=allowed).transpose(1, 2)


class CompactKV:
    """Per layer our chunked-prefill plan over a paged cache (pages shuffled)."""

    def __init__(self, cfg, B, L, C, s, per_query_block, alpha, sink=2, window=4):
        from compact_attention import ChunkedPrefill, Runtime
        from workload import PagedCache
        rt = Runtime(cfg.q_heads, cfg.kv_heads, cfg.head_dim, 64, 128)
        self.Kb = -(-L // 128)
        self.caches = [PagedCache(B, L, cfg.kv_heads, cfg.head_dim, seed=i)
                       for i in range(cfg.layers)]
        self.pooled = [torch.zeros((B, cfg.kv_heads, self.Kb, cfg.head_dim),
                                   dtype=torch.bfloat16, device="cuda")
                       for _ in range(cfg.layers)]
        self.plans = [ChunkedPrefill(rt, B, self.Kb, exec_group_size=s, alpha=alpha, sink=sink,
                                     window=window, per_query_block=per_query_block,
                                     max_chunk_len=C) for _ in range(cfg.layers)]
        self.density = []

    def __call__(self, layer, q, k, v, c0):
        B, C = q.shape[:2]
        lens = torch.full((B,), c0 + C, dtype=torch.int32, device=q.device)
        cache = self.caches[layer]
        out = self.plans[layer](q.contiguous(), k.contiguous(), v.contiguous(), cache.k,
                                cache.v, cache.page_table, lens, self.pooled[layer],
                                max_prefix_len=c0)
        _, counts = self.plans[layer].tables()
        self.density.append(counts.float().mean() / -(-(c0 + C) // 128))
        return out


@torch.no_grad()
def chunked_logits(model, tokens, C, attend):
    """Logits of the last chunk, the prompt prefilled C tokens at a time."""
    logits = None
    for c0 in range(0, tokens.shape[1], C):
        logits = model(tokens[:, c0:c0 + C], c0=c0, attend=attend)
    return logits


# -- train / eval -------------------------------------------------------------

def train(args):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = RecallModel().to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    # Curriculum: (length, batch, steps); the last stage is the eval length.
    stages = [tuple(map(int, s.split(":"))) for s in args.stages.split(",")]
    total = sum(s for _, _, s in stages)
    step, t0, log = 0, time.time(), []
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    for L, B, steps in stages:
        # Each stage gets its share of the time budget, so the last (the
        # evaluation length) always trains.
        deadline = time.time() + args.max_seconds * steps / total
        for i in range(steps):
            if time.time() > deadline:
                break
            # Per stage: a short warm-up, then cosine down to a tenth (a new
            # length starts with a learning rate that can still adapt).
            lr = args.lr * min(1.0, (i + 1) / 50) * (0.55 + 0.45 * math.cos(math.pi * i / steps))
            for group in opt.param_groups:
                group["lr"] = lr
            # Between L / 64 and L / 16 needles (at most 64), half of them asked.
            hi = min(KEYS, max(2, L // 16))
            P = int(torch.randint(max(2, min(hi, L // 64)), hi + 1, (1,), generator=gen))
            tokens, where = recall_batch(B, L, gen, device, pairs=P)
            with autocast:
                logits = model(tokens)
            at = where[..., None].expand(-1, -1, logits.shape[-1])
            loss = F.cross_entropy(logits.gather(1, at).float().flatten(0, 1),
                                   tokens.gather(1, where + 1).flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % args.log_every == 0 or step == total:
                acc = recall_accuracy(logits.detach(), tokens, where)
                log.append({"step": step, "L": L, "loss": float(loss.detach()), "accuracy": acc,
                            "seconds": time.time() - t0})
                print(f"step {step}/{total} L={L} loss {log[-1]['loss']:.3f} acc {acc:.3f} "
                      f"({time.time() - t0:.0f}s)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    torch.save({"state": state, "params": params, "stages": args.stages, "seed": args.seed,
                "log": log}, out)
    print(f"{params / 1e6:.2f} M parameters -> {out} ({out.stat().st_size / 1e6:.1f} MB)")


def load(weights, device):
    saved = torch.load(weights, map_location=device)
    model = RecallModel().to(device)
    model.load_state_dict({k: v.float() for k, v in saved["state"].items()})
    return model.to(torch.bfloat16).eval(), saved


def methods(args, cfg, B, L):
    """name -> (make attention state or None for the unchunked forward)."""
    out = {"dense (unchunked)": None,
           "dense": lambda: ContiguousKV(cfg, B, L, "cuda")}
    for alpha in map(float, args.alphas.split(",")):
        out[f"ours s=4 a={alpha}"] = (lambda a=alpha: CompactKV(cfg, B, L, args.chunk, 4, False, a))
        out[f"ours s=1 per-qb a={alpha}"] = (
            lambda a=alpha: CompactKV(cfg, B, L, args.chunk, 1, True, a))
    try:
        from baselines import quoka_attention
        out["quoka"] = lambda: ContiguousKV(cfg, B, L, "cuda", fn=quoka_attention)
    except ImportError as e:
        print(f"retrieval: no QUOKA-style baseline ({e})")
    return out


def evaluate_method(args, model, make, batches, L):
    """Accuracy of one method over the batches (prefill time per batch: the
    whole prompt, all layers, CUDA events)."""
    acc, density, ms = [], [], 0.0
    for tokens, where in batches:
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        if make is None:
            logits, offset = model(tokens), 0
        else:
            state = make()
            logits = chunked_logits(model, tokens, args.chunk, state)
            offset = (L - 1) // args.chunk * args.chunk
            if isinstance(state, CompactKV):
                # The last chunk's layers: the tables' share of the context.
                density.append(float(torch.stack(state.density[-model.cfg.layers:]).mean()))
        end.record()
        end.synchronize()
        ms += start.elapsed_time(end)
        acc.append(recall_accuracy(logits, tokens, where, offset))
    entry = {"accuracy": sum(acc) / len(acc), "prefill_ms_per_batch": ms / len(batches)}
    if density:
        entry["last_chunk_density"] = sum(density) / len(density)
    return entry


@torch.no_grad()
def evaluate(args):
    model, saved = load(args.weights, "cuda")
    cfg = model.cfg
    gen = torch.Generator().manual_seed(args.seed + 1)
    results = []
    for L, (P, Q) in ((L, tuple(map(int, pq.split(":")))) for L in map(int, args.lengths.split(","))
                      for pq in args.settings.split(",")):
        batches = [recall_batch(args.batch, L, gen, "cuda", pairs=P, queries=Q)
                   for _ in range(args.batches)]
        for name, make in methods(args, cfg, args.batch, L).items():
            try:
                entry = evaluate_method(args, model, make, batches, L)
            except Exception as e:  # one method's failure leaves the others' results
                entry = {"error": f"{type(e).__name__}: {e}"}
            results.append(dict(L=L, pairs=P, queries=Q, method=name, **entry))
            print(f"L={L:>6} P={P:>2} Q={Q:>2} {name:<24} " + (f"accuracy {entry['accuracy']:.3f}" if "accuracy"
                                              in entry else entry["error"])
                  + (f"  density {entry['last_chunk_density']:.3f}"
                     if "last_chunk_density" in entry else ""), flush=True)
    report = {"commit": os.environ.get("COMPACT_COMMIT", "unknown"),
              "date": datetime.date.today().isoformat(), "gpu": torch.cuda.get_device_name(),
              "weights": str(args.weights), "params": saved["params"],
              "training": {"stages": saved["stages"], "log_tail": saved["log"][-3:]},
              "chunk": args.chunk, "batch": args.batch, "batches": args.batches,
              "task": "multi-key needle in a haystack: P needles (one token: key + value), Q "
                      "questions at the end (training: L/64..L/16 needles, half asked)",
              "results": results}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", default="bench/retrieval/model.pt")
    t.add_argument("--stages", default="256:256:800,1024:64:800,4096:16:600,8192:8:600",
                   help="length:batch:steps,... (curriculum)")
    t.add_argument("--max-seconds", type=float, default=240,
                   help="time budget, shared by the stages in proportion to their steps")
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--log-every", type=int, default=50)
    e = sub.add_parser("eval")
    e.add_argument("--weights", default="bench/retrieval/model.pt")
    e.add_argument("--out", default="retrieval.json")
    e.add_argument("--lengths", default="8192")
    e.add_argument("--settings", default="64:32,16:4",
                   help="needles:questions,...: planted needles and how many are asked")
    e.add_argument("--chunk", type=int, default=1024)
    e.add_argument("--batch", type=int, default=8)
    e.add_argument("--batches", type=int, default=4)
    e.add_argument("--alphas", default="0.06,0.3,0.6,0.9")
    e.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    train(args) if args.command == "train" else evaluate(args)


if __name__ == "__main__":
    main()
