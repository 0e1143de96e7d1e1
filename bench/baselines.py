"""Reference attention methods for one chunk over contiguous K / V, for
fidelity measurements (bench/fidelity.py).

The chunk's queries sit at positions [c0, c0 + C) of the prompt and attend
to keys [0, c0 + C), causally (bottom-right). Layouts as in the engines:
q [B, C, Hq, D], k / v [B, >= c0 + C, Hkv, D]; query head h reads KV head
h // G (GQA). The math is plain matmuls and softmax in fp32, one head and one
tile of query rows at a time (memory: one [TILE, c0 + C] score matrix), so
it runs on the CPU with torch 1.13 as well as on the GPU; the timed paths
(`exact=False`) use SDPA flash where the GPU has it.

Keep masks (what a method lets a query read) are [B, H, R, N] bool, with H
the query heads or the KV heads (a KV head's entry holds for its G query
heads), R = 1 (every row of the chunk) or one entry per `block` query rows,
and N = one entry per `block` keys: block = 1 is a token-level mask, and a
[B, Hq, Qb, Kb] selector mask with block = 128 a block-level one.
"""

import math

import torch
import torch.nn.functional as F

TILE = 1024      # query rows per score matrix
KEY_TILE = 32768  # keys per QUOKA scoring matmul


def _tiles(q, k, c0):
    """Yields (b, h, i0, i1, logits [i1 - i0, c0 + C]) in fp32 with the causal
    mask applied (-inf above the bottom-right diagonal)."""
    B, C, Hq, D = q.shape
    n, G = c0 + C, Hq // k.shape[2]
    j = torch.arange(n, device=q.device)
    for b in range(B):
        for h in range(Hq):
            kh = k[b, :n, h // G].float()
            for i0 in range(0, C, TILE):
                i1 = min(C, i0 + TILE)
                s = (q[b, i0:i1, h].float() @ kh.T) / math.sqrt(D)
                rows = c0 + torch.arange(i0, i1, device=q.device)
                yield b, h, i0, i1, s.masked_fill(j[None, :] > rows[:, None], -math.inf)


def _keep(keep, b, h, i0, i1, n, Hq, block):
    """The [i1 - i0, n] bool slice of a keep mask for head h of sequence b."""
    kh = keep[b, h // (Hq // keep.shape[1])]                       # [R, N]
    rows = torch.arange(i0, i1, device=kh.device)
    rows = rows // block if kh.shape[0] > 1 else torch.zeros_like(rows)
    return kh[rows][:, torch.arange(n, device=kh.device) // block].bool()


def _flash(q, k, v):
    """SDPA flash, bottom-right causal, native GQA: [B, C, H, D] in and out."""
    return torch.ops.aten._scaled_dot_product_flash_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), 0.0, True)[0].transpose(1, 2)


def _fast(q, exact):
    return (not exact and q.is_cuda and
            hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention"))


def mask_attention(q, k, v, c0, mask, block):
    """Softmax attention of the chunk restricted to a keep mask (and causal):
    what block-sparse execution of `mask` computes, in fp32. Rows that keep
    no key give 0. Returns [B, C, Hq, D] fp32."""
    B, C, Hq, D = q.shape
    G = Hq // k.shape[2]
    out = torch.zeros((B, C, Hq, D), dtype=torch.float32, device=q.device)
    for b, h, i0, i1, s in _tiles(q, k, c0):
        if mask is not None:
            s = s.masked_fill(~_keep(mask, b, h, i0, i1, s.shape[1], Hq, block), -math.inf)
        m = s.amax(dim=1, keepdim=True)
        p = torch.exp(s - torch.where(torch.isfinite(m), m, torch.zeros_like(m)))
        l = p.sum(dim=1, keepdim=True)
        out[b, i0:i1, h] = (p @ v[b, :s.shape[1], h // G].float()) / l.clamp(min=1e-30)
    return out


def dense_attention(q, k, v, c0, exact=True):
    """Causal attention of the chunk over every key: fp32 math, or SDPA
    flash on the GPU with exact=False (in q's dtype)."""
    if _fast(q, exact):
        C = q.shape[1]
        return _flash(q, k[:, :c0 + C], v[:, :c0 + C])
    return mask_attention(q, k, v, c0, None, 1)


def coverage(q, k, c0, keep, block=1):
    """(recall, density) of a keep mask: the fraction of the dense softmax
    mass of each query row that falls on kept keys, and the fraction of its
    causally visible keys that are kept, both averaged over rows and heads."""
    B, C, Hq, _ = q.shape
    mass = seen = 0.0
    for b, h, i0, i1, s in _tiles(q, k, c0):
        kept = _keep(keep, b, h, i0, i1, s.shape[1], Hq, block)
        visible = torch.isfinite(s)
        mass += float((torch.softmax(s, dim=1) * kept).sum())
        seen += float((kept & visible).sum(dim=1).double().div(visible.sum(dim=1)).sum())
    rows = B * C * Hq
    return mass / rows, seen / rows


def attention_mass_recall(q, k, c0, keep, block=1):
    """The fraction of the dense softmax mass (per query row, averaged) that
    falls on the kept keys (see `coverage`)."""
    return coverage(q, k, c0, keep, block)[0]


# -- QUOKA-style token selection with explicit gather -----------------------
#
# QuoKA (Jones, Park, Morse, Lee, Lott, Langston, Qualcomm AI Research, ICLR
# 2026, arXiv 2602.08722, "Query-oriented KV selection for efficient LLM
# prefill"), as its abstract and summaries describe it: under chunked
# prefill, queries with a low cosine similarity to the chunk's mean query
# interact with more keys and carry most of the attention logits; QuoKA
# (1) keeps a small set of such queries, (2) scores the KV cache by cosine
# similarity with them, aggregates the scores over the kept queries and the
# KV group's heads, keeps a budget of the best KV tokens, and (3) runs dense
# attention over the subselected KV with standard kernels (no custom sparse
# kernel: the KV is gathered). The exact aggregation operators were not in
# what we could read; we take the max over the kept queries and the group.


def quoka_select(q, k, c0, query_frac=0.25, kv_frac=0.25):
    """Past tokens QUOKA keeps for the chunk: [B, Hkv, round(kv_frac * c0)]
    ascending positions in [0, c0), per KV head."""
    B, C, Hq, D = q.shape
    Hkv = k.shape[2]
    G = Hq // Hkv
    nk = int(round(kv_frac * c0))
    if nk == 0:
        return torch.zeros((B, Hkv, 0), dtype=torch.long, device=q.device)
    nq = max(1, int(round(query_frac * C)))
    dt = q.dtype if q.is_cuda else torch.float32
    qf = q.float()
    cos = F.cosine_similarity(qf, qf.mean(dim=1, keepdim=True), dim=-1)      # [B, C, Hq]
    sel = cos.topk(nq, dim=1, largest=False).indices                          # [B, nq, Hq]
    qs = F.normalize(qf.gather(1, sel[..., None].expand(-1, -1, -1, D)), dim=-1)
    qs = qs.view(B, nq, Hkv, G, D).permute(0, 2, 3, 1, 4).reshape(B, Hkv, G * nq, D).to(dt)
    score = torch.empty((B, Hkv, c0), dtype=torch.float32, device=q.device)
    for g in range(Hkv):
        for j0 in range(0, c0, KEY_TILE):
            j1 = min(c0, j0 + KEY_TILE)
            kn = F.normalize(k[:, j0:j1, g].float(), dim=-1).to(dt)
            score[:, g, j0:j1] = (qs[:, g] @ kn.transpose(1, 2)).amax(dim=1).float()
    return score.topk(nk, dim=-1).indices.sort(dim=-1).values


def gathered_attention(q, k, v, c0, idx, exact=True):
    """Dense causal attention over the past tokens `idx` [B, Hkv, n] and the
    chunk's own tokens, gathered into contiguous K / V first."""
    C, D = q.shape[1], q.shape[3]

    def gather(x):
        xt = x[:, :c0 + C].transpose(1, 2)                                   # [B, Hkv, n, D]
        past = xt.gather(2, idx[..., None].expand(-1, -1, -1, D))
        return torch.cat((past, xt[:, :, c0:]), dim=2).transpose(1, 2)

    return dense_attention(q, gather(k), gather(v), idx.shape[-1], exact)


def quoka_attention(q, k, v, c0, query_frac=0.25, kv_frac=0.25, exact=True):
    """QUOKA-style attention of the chunk: selection, explicit gather, dense
    attention over the gathered K / V."""
    return gathered_attention(q, k, v, c0, quoka_select(q, k, c0, query_frac, kv_frac), exact)


def token_keep(idx, c0, C):
    """Token-level keep mask [B, Hkv, 1, c0 + C] of kept past tokens `idx`
    plus the chunk."""
    B, H, _ = idx.shape
    keep = torch.zeros((B, H, 1, c0 + C), dtype=torch.bool, device=idx.device)
    keep[..., c0:] = True
    keep[:, :, 0].scatter_(-1, idx, True)
    return keep
