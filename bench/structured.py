"""Long-context attention inputs with the structures real heads show, and
their ground truth, for fidelity benchmarks (bench/fidelity.py).

    q, k, v, truth = structured_inputs(B, L, level="medium", chunk=1024)

Every KV head's keys, and every query head's queries, are a sum of parts
(strengths are logits, q . k / sqrt(D), at the structure's peak, per token):

* noise: N(0, QUERY_NOISE^2) in every dimension of q, N(0, noise^2) in k
  (per level) and N(0, 1) in v;
* local window: real RoPE (theta 500000 as in LLaMA-3, rotate-half pairs)
  applied to a content vector shared by q and k that varies slowly along the
  sequence (a new random anchor every ANCHOR tokens, interpolated), in the
  "local" RoPE pairs (16..39 of 64 at D = 128: wavelengths ~135 to ~18K
  tokens): q_t . k_t' peaks at t' = t and decays over a few hundred tokens;
* slash: a constant vector in the fast "slash" pairs (0..15), rotated by RoPE
  at position t for keys and t - offset for the queries of slash heads: each
  such query attends to the keys `offset` tokens back (one offset per slash
  head, log-spaced over SLASH_OFFSETS: 16, 102, 645, 4096 for four slash
  heads, so some lie beyond a local window); mean-pooling a key block
  averages these fast pairs away, so block selectors hardly see them;
* attention sinks: the first SINKS keys carry a direction that every query
  of the head carries too;
* vertical stripes: a fraction `stripe_frac` of the key blocks of each KV
  head carry the group's stripe direction, which every query head of the
  group carries (with per-head strength);
* needles: per KV head `needles` spans of `needle_len` keys (before the last
  chunk) each carry a needle direction; only the needle heads (one in four)
  carry it, and only on `needle_rows` rows of one query block in each window
  of `chunk` tokens after the needle (e.g. 64 rows of 1 of the 8 query
  blocks); the needle's values carry a recognisable unit vector
  (`needle_value`, norm VALUE_SCALE * sqrt(D) against noise of norm sqrt(D));
* distractors: a fraction `distractor_frac` of the key blocks carry a needle
  direction weakly (logit `distractor` for the rows that need it): to a
  mean-pooled block score a distractor block looks like a needle, to token
  attention it is weak.

The sink, stripe and needle directions are orthonormal, in the slow "content"
pairs (40..63), and are added after RoPE (as if in RoPE's slowest pairs,
which barely rotate over the context), so that the parts do not interfere.
Query heads have one of four profiles, by their index j within the group
(G = 4: one head each):

| profile (j % 4) | share | sink | local | slash | stripes | needles |
|---|---|---|---|---|---|---|
| 0 retrieval | 25% | 0.5 | 0.5 | - | 1.0 | yes |
| 1 slash | 25% | 0.5 | 0.5 | 1.0 | 0.5 | - |
| 2 local | 25% | 1.0 | 1.0 | - | 0.5 | - |
| 3 sink + stripes | 25% | 1.0 | 0.7 | - | 1.0 | - |

(multipliers on the level's logits, times a per-head strength in [0.75,
1.25)). Levels (`LEVELS`): easy has 32-token needles read by a whole query
block and few distractors; medium 16-token needles read by 64 rows; hard
2-token needles read by 8 rows, more distractors and stripes, noisier keys,
stronger slashes and weaker local windows. Dense attention retrieves every
needle at every level (bench/test_fidelity_cpu.py checks it).
"""

import math

import torch

THETA = 500000.0
SINKS = 4
ANCHOR = 512          # tokens between the local content's random anchors
VALUE_SCALE = 1.5
QUERY_NOISE = 0.6
SLASH_OFFSETS = (16, 4096)  # slash heads' offsets, log-spaced over the range
# RoPE pairs (of D / 2) per kind of part, as fractions: for D = 128, pairs
# 0..15 (slash), 16..39 (local), 40..63 (content); the same frequencies at any D.
BANDS = {"slash": (0, 1 / 4), "local": (1 / 4, 5 / 8), "content": (5 / 8, 1)}

# Per level: logits at each structure's peak (per token), the key noise,
# counts, and the fractions of key blocks that are stripes and distractors.
LEVELS = {
    "easy": dict(noise=0.5, sink=10.0, local=7.0, slash=8.0, stripe=4.0, stripe_frac=0.01,
                 needle=16.0, needles=2, needle_len=32, needle_rows=128,
                 distractor=3.0, distractor_frac=0.01),
    "medium": dict(noise=0.6, sink=10.0, local=6.5, slash=9.0, stripe=3.5, stripe_frac=0.02,
                   needle=16.0, needles=4, needle_len=16, needle_rows=64,
                   distractor=4.0, distractor_frac=0.03),
    "hard": dict(noise=0.7, sink=10.0, local=6.0, slash=10.0, stripe=3.0, stripe_frac=0.03,
                 needle=17.0, needles=4, needle_len=2, needle_rows=8,
                 distractor=4.5, distractor_frac=0.08),
}
# Per profile: multipliers of the sink, local, slash and stripe logits; needles.
PROFILES = [dict(sink=0.5, local=0.5, slash=0.0, stripe=1.0, needle=True),
            dict(sink=0.5, local=0.5, slash=1.0, stripe=0.5, needle=False),
            dict(sink=1.0, local=1.0, slash=0.0, stripe=0.5, needle=False),
            dict(sink=1.0, local=0.7, slash=0.0, stripe=1.0, needle=False)]


def rope(x, pos, theta=THETA):
    """LLaMA RoPE (rotate-half pairs (i, i + D/2), frequency theta^(-2i/D))
    of x [..., L, D] at positions pos [L] (any integer, may be negative)."""
    D = x.shape[-1]
    inv = theta ** (-torch.arange(0, D // 2, dtype=torch.float64, device=x.device) * 2 / D)
    ang = pos.to(torch.float64)[:, None] * inv[None, :]
    cos, sin = ang.cos().float(), ang.sin().float()
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def _dims(D, band):
    """The dimensions of a band's RoPE pairs (both halves of each pair)."""
    lo, hi = (round(f * D / 2) for f in BANDS[band])
    idx = torch.arange(lo, hi)
    return torch.cat((idx, idx + D // 2))


def _unit(g, shape, D, band, device, count=None):
    """Random unit vectors [*shape, D] supported on a band's dimensions; with
    `count`, [*shape, count, D] orthonormal ones."""
    dims = _dims(D, band).to(device)
    n = 1 if count is None else count
    x = torch.linalg.qr(torch.randn((*shape, len(dims), n), generator=g, device=device))[0]
    out = torch.zeros((*shape, n, D), device=device)
    out[..., dims] = x.transpose(-1, -2)
    return out[..., 0, :] if count is None else out


def _amp(logit, D):
    """Amplitude a of q and k parts so that a * a / sqrt(D) = logit."""
    return math.sqrt(logit * math.sqrt(D))


def _spans(starts, length, L):
    """Token indices [..., n * length] of spans starting at `starts` [..., n]."""
    t = starts[..., None] + torch.arange(length, device=starts.device)
    return t.clamp(max=L - 1).flatten(-2)


def _mark(dst, tok, value):
    """dst[b, tok, h] += value for every (b, h) row of tok [B, H, n]."""
    B, H, n = tok.shape
    bb = torch.arange(B, device=tok.device)[:, None, None].expand(B, H, n)
    hh = torch.arange(H, device=tok.device)[None, :, None].expand(B, H, n)
    dst.index_put_((bb.flatten(), tok.flatten(), hh.flatten()),
                   value.reshape(-1, value.shape[-1]), accumulate=True)


def structured_inputs(B, L, Hq=16, Hkv=4, D=128, block=128, level="medium", seed=0,
                      device="cuda", chunk=1024, dtype=torch.bfloat16):
    """q [B, L, Hq, D], k / v [B, L, Hkv, D] (dtype) and the ground truth:

    * needle_pos [B, Hkv, n]: first token of each needle (its keys are
      needle_pos .. needle_pos + needle_len - 1), needle_len;
    * needle_value [B, Hkv, n, D]: unit direction of each needle's values;
    * need [B, L, Hq] (int64): the needle (index into n) that query row t of
      head h needs, -1 for none;
    * slash_offset [Hq] (-1: not a slash head), profile [Hq], stripes
      [B, Hkv, n] and distractors [B, Hkv, n] (key blocks), params.
    """
    p = LEVELS[level]
    G = Hq // Hkv
    g = torch.Generator(device=device).manual_seed(seed)
    pos = torch.arange(L, device=device)
    nb = -(-L // block)
    a = {name: _amp(p[name], D) for name in ("sink", "local", "slash", "stripe", "needle")}

    def randint(high, shape, low=0):
        return torch.randint(low, max(high, low + 1), shape, generator=g, device=device)

    # Per-KV-head directions (sink, stripe and needles orthonormal) and places.
    content = _unit(g, (B, Hkv), D, "content", device, count=2 + p["needles"])
    sink_dir, stripe_dir, needle_dir = content[:, :, 0], content[:, :, 1], content[:, :, 2:]
    needle_value = torch.randn((B, Hkv, p["needles"], D), generator=g, device=device)
    needle_value /= needle_value.norm(dim=-1, keepdim=True)
    slash_vec = _unit(g, (B, Hkv), D, "slash", device)
    anchors = _unit(g, (B, L // ANCHOR + 2, Hkv), D, "local", device)
    # Needles lie before the last chunk; stripes and distractors are whole
    # blocks (never block 0, which holds the sinks, nor a partial last block).
    last = max(L - chunk - p["needle_len"], SINKS + 1)
    needle_pos = randint(last, (B, Hkv, p["needles"]), SINKS)
    n_stripes, n_decoys = (max(1, round(p[f] * nb)) for f in ("stripe_frac", "distractor_frac"))
    stripes = randint(L // block, (B, Hkv, n_stripes), 1)
    distractors = randint(L // block, (B, Hkv, n_decoys), 1)
    decoy = needle_dir.gather(2, randint(p["needles"], (B, Hkv, n_decoys, 1))
                              .expand(-1, -1, -1, D))

    # Local content: cos / sin interpolation between anchors (keeps the norm).
    f = (pos % ANCHOR).float() / ANCHOR * (math.pi / 2)
    j = pos // ANCHOR
    local = (anchors[:, j] * f.cos()[None, :, None, None] +
             anchors[:, j + 1] * f.sin()[None, :, None, None])        # [B, L, Hkv, D]

    # Keys.
    k = p["noise"] * torch.randn((B, L, Hkv, D), generator=g, device=device)
    k += a["local"] * rope(local.transpose(1, 2), pos).transpose(1, 2)
    k += a["slash"] * rope(slash_vec[:, :, None, :].expand(B, Hkv, L, D), pos).transpose(1, 2)
    k[:, :SINKS] += a["sink"] * sink_dir[:, None]
    _mark(k, _spans(stripes * block, block, L),
          a["stripe"] * stripe_dir[:, :, None].expand(-1, -1, n_stripes * block, -1))
    _mark(k, _spans(needle_pos, p["needle_len"], L),
          a["needle"] * needle_dir.repeat_interleave(p["needle_len"], dim=2))
    _mark(k, _spans(distractors * block, block, L),
          p["distractor"] / p["needle"] * a["needle"] * decoy.repeat_interleave(block, dim=2))

    # Values.
    v = torch.randn((B, L, Hkv, D), generator=g, device=device)
    _mark(v, _spans(needle_pos, p["needle_len"], L),
          VALUE_SCALE * math.sqrt(D) * needle_value.repeat_interleave(p["needle_len"], dim=2))

    # Which rows need which needle: in every window of `chunk` tokens that
    # starts after the needle, `needle_rows` rows of one query block (the
    # needles of a head get distinct blocks while there are enough).
    W, Qw = L // chunk, -(-chunk // block)
    need_kv = torch.full((B, L, Hkv), -1, dtype=torch.long, device=device)
    if W > 0:
        order = torch.rand((B, Hkv, W, Qw), generator=g, device=device).argsort(-1)
        blk = order[..., torch.arange(p["needles"], device=device) % Qw]  # [B, Hkv, W, n]
        rows = min(p["needle_rows"], block)
        off = randint(block - rows + 1, (B, Hkv, W, p["needles"]))
        start = (torch.arange(W, device=device)[:, None] * chunk + blk * block + off)
        start = start.clamp(max=L - rows)
        after = start >= (needle_pos + p["needle_len"])[:, :, None, :]
        tok = (start[..., None] + torch.arange(rows, device=device)).flatten(2)  # [B,Hkv,W*n*r]
        idx = torch.arange(p["needles"], device=device)[None, None, None, :, None]
        which = idx.expand(B, Hkv, W, -1, rows).flatten(2)
        ok = after[..., None].expand(-1, -1, -1, -1, rows).flatten(2)
        bb = torch.arange(B, device=device)[:, None, None].expand_as(tok)
        hh = torch.arange(Hkv, device=device)[None, :, None].expand_as(tok)
        need_kv[bb[ok], tok[ok], hh[ok]] = which[ok]

    # Queries, one head at a time (bounds the memory at B * L = 1M tokens).
    q = torch.empty((B, L, Hq, D), dtype=dtype, device=device)
    profile = [h % G % len(PROFILES) for h in range(Hq)]
    slashes = [h for h in range(Hq) if PROFILES[profile[h]]["slash"]]
    slash_offset = [-1] * Hq
    need = torch.full((B, L, Hq), -1, dtype=torch.long, device=device)
    for h in range(Hq):
        kv, pr = h // G, PROFILES[profile[h]]
        w = 0.75 + 0.5 * torch.rand((), generator=g, device=device).item()  # per-head strength
        qh = QUERY_NOISE * torch.randn((B, L, D), generator=g, device=device)
        qh += pr["local"] * w * a["local"] * rope(local[:, :, kv], pos)
        qh += pr["sink"] * w * a["sink"] * sink_dir[:, None, kv]
        qh += pr["stripe"] * w * a["stripe"] * stripe_dir[:, None, kv]
        if pr["slash"]:
            # The m-th slash head of n: offset 16 * 256^(m / (n - 1)).
            m, n = slashes.index(h), len(slashes)
            off = round(SLASH_OFFSETS[0] * (SLASH_OFFSETS[1] / SLASH_OFFSETS[0]) **
                        (m / max(n - 1, 1)))
            slash_offset[h] = off
            qh += pr["slash"] * w * a["slash"] * rope(slash_vec[:, kv, None].expand(B, L, D),
                                                       pos - off)
        if pr["needle"]:
            n = need_kv[:, :, kv]
            need[:, :, h] = n
            dirs = needle_dir[:, kv].gather(1, n.clamp(min=0)[..., None].expand(-1, -1, D))
            qh += a["needle"] * (n >= 0)[..., None] * dirs
        q[:, :, h] = qh.to(dtype)
    truth = {"needle_pos": needle_pos, "needle_len": p["needle_len"],
             "needle_value": needle_value, "need": need, "slash_offset": slash_offset,
             "profile": profile, "stripes": stripes, "distractors": distractors,
             "params": dict(p, level=level, chunk=chunk, block=block, seed=seed)}
    return q, k.to(dtype), v.to(dtype), truth
