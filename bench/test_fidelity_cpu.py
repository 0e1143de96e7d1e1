"""CPU checks of the fidelity benchmark's pieces (bench/structured.py,
bench/baselines.py, the table expansion of bench/fidelity.py) at small sizes;
plain asserts, not part of CI:

    /usr/bin/python3 bench/test_fidelity_cpu.py
"""

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import (coverage, dense_attention, gathered_attention,  # noqa: E402
                       mask_attention, quoka_attention, quoka_select, token_keep)
from fidelity import THRESH, table_keep  # noqa: E402
from structured import LEVELS, rope, structured_inputs  # noqa: E402


def naive(q, k, v, c0):
    """fp64 causal GQA attention in one piece, independent of baselines."""
    B, C, Hq, D = q.shape
    G = Hq // k.shape[2]
    kk = k[:, :c0 + C].double().repeat_interleave(G, dim=2)
    vv = v[:, :c0 + C].double().repeat_interleave(G, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", q.double(), kk) / math.sqrt(D)
    j = torch.arange(c0 + C)
    s = s.masked_fill(j[None, :] > c0 + torch.arange(C)[:, None], -math.inf)
    return torch.einsum("bhij,bjhd->bihd", torch.softmax(s, -1), vv)


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def random_chunk(gen, B=2, C=96, c0=200, Hq=4, Hkv=2, D=32):
    q = torch.randn((B, C, Hq, D), generator=gen)
    k = torch.randn((B, c0 + C + 7, Hkv, D), generator=gen)  # longer than needed
    v = torch.randn((B, c0 + C + 7, Hkv, D), generator=gen)
    return q, k, v


def test_baselines():
    gen = torch.Generator().manual_seed(1)
    q, k, v = random_chunk(gen)
    B, C, Hq, D = q.shape
    Hkv, c0, n = k.shape[2], 200, 200 + C
    ref = naive(q, k, v, c0)
    assert rel(dense_attention(q, k, v, c0), ref) < 1e-5
    # An all-ones mask, block or token level, is dense attention.
    block = 64
    ones = torch.ones((B, Hq, -(-C // block), -(-n // block)), dtype=torch.bool)
    assert rel(mask_attention(q, k, v, c0, ones, block), ref) < 1e-5
    assert rel(mask_attention(q, k, v, c0, torch.ones((B, Hkv, 1, n), dtype=torch.bool), 1),
               ref) < 1e-5
    # QUOKA keeping every query and every past token is dense attention.
    assert rel(quoka_attention(q, k, v, c0, query_frac=1.0, kv_frac=1.0), ref) < 1e-5
    # Full keep: recall 1, density 1; chunk only: less of both.
    r, d = coverage(q, k, c0, ones, block)
    assert abs(r - 1) < 1e-5 and abs(d - 1) < 1e-9, (r, d)
    r0, d0 = coverage(q, k, c0, token_keep(torch.zeros((B, Hkv, 0), dtype=torch.long), c0, C))
    assert 0 < r0 < 1 and 0 < d0 < 1, (r0, d0)
    # A block mask per (head, query block), against fp64 with the same
    # token-level mask, including the causal diagonal (c0 is not a multiple
    # of the block) and a query block that keeps only its diagonal.
    mask = torch.rand(ones.shape, generator=gen) < 0.4
    mask[:, :, 0] = False
    kb = (c0 + torch.arange(C)) // block  # the diagonal key block of each row
    mask[:, :, 0, kb[0]:kb[block - 1] + 1] = True
    tok = mask[:, :, torch.arange(C) // block][..., torch.arange(n) // block]  # [B, Hq, C, n]
    s = torch.einsum("bihd,bjhd->bhij", q.double(),
                     k[:, :n].double().repeat_interleave(Hq // Hkv, dim=2)) / math.sqrt(D)
    causal = torch.arange(n)[None, :] > c0 + torch.arange(C)[:, None]
    p = torch.softmax(s.masked_fill(causal | ~tok, -math.inf), -1).nan_to_num()  # empty: 0
    want = torch.einsum("bhij,bjhd->bihd", p,
                        v[:, :n].double().repeat_interleave(Hq // Hkv, dim=2))
    assert rel(mask_attention(q, k, v, c0, mask, block), want) < 1e-5
    # Recall of that mask is the dense mass on it; a token-level copy agrees.
    dense_p = torch.softmax(s.masked_fill(causal, -math.inf), -1)
    want_recall = float((dense_p * tok).sum() / (B * Hq * C))
    r, d = coverage(q, k, c0, mask, block)
    assert abs(r - want_recall) < 1e-5, (r, want_recall)
    r_tok, d_tok = coverage(q, k, c0, tok, 1)
    assert abs(r_tok - r) < 1e-5 and abs(d_tok - d) < 1e-9
    # Gathering given past tokens = the mask that keeps those tokens and the chunk.
    idx = torch.stack([torch.randperm(c0, generator=gen)[:50].sort().values
                       for _ in range(B * Hkv)]).view(B, Hkv, 50)
    keep = token_keep(idx, c0, C)
    assert rel(gathered_attention(q, k, v, c0, idx), mask_attention(q, k, v, c0, keep, 1)) < 1e-5
    # QUOKA keeps round(kv_frac * c0) distinct ascending past tokens per KV head.
    sel = quoka_select(q, k, c0, 0.25, 0.25)
    assert sel.shape == (B, Hkv, 50) and bool((sel[..., 1:] > sel[..., :-1]).all())
    assert int(sel.max()) < c0


def test_table_keep():
    # Hq = 16 (fidelity's shapes), s = 4: row e covers heads 4e .. 4e + 3, all
    # query blocks; per query block with s = 1: row h * Qb + qb.
    B, Kb, Qb = 1, 6, 2
    table = torch.full((B, 4, Kb), 99, dtype=torch.int32)
    counts = torch.tensor([[2, 0, 1, 6]], dtype=torch.int32)
    table[0, 0, :2] = torch.tensor([1, 4])
    table[0, 2, :1] = 5
    table[0, 3] = torch.arange(Kb)
    keep = table_keep(table, counts, 4)
    assert keep.shape == (1, 16, 1, Kb)
    assert keep[0, 0:4, 0].tolist() == [[False, True, False, False, True, False]] * 4
    assert not keep[0, 4:8].any() and keep[0, 12:16].all()
    assert keep[0, 8:12, 0].tolist() == [[False] * 5 + [True]] * 4
    table = torch.zeros((B, 16 * Qb, Kb), dtype=torch.int32)
    counts = torch.zeros((B, 16 * Qb), dtype=torch.int32)
    table[0, 3 * Qb + 1, 0], counts[0, 3 * Qb + 1] = 2, 1
    keep = table_keep(table, counts, 1)
    assert keep.shape == (1, 16, Qb, Kb) and int(keep.sum()) == 1 and bool(keep[0, 3, 1, 2])


def test_rope_is_relative():
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn((2, 1, 128), generator=gen)
    pos = torch.tensor([1000])
    for shift in (0, 17, 4000):
        a = (rope(x, pos + shift) * rope(y, pos + shift + 5)).sum()
        b = (rope(x, torch.tensor([0])) * rope(y, torch.tensor([5]))).sum()
        assert abs(float(a - b)) < 1e-3 * float(x.norm() * y.norm())


def test_structured():
    B, L, C, Hq, Hkv = 1, 4096, 512, 16, 4
    G = Hq // Hkv
    for level in LEVELS:
        q, k, v, truth = structured_inputs(B, L, Hq, Hkv, level=level, seed=3, device="cpu",
                                           chunk=C)
        assert q.shape == (B, L, Hq, 128) and k.shape == v.shape == (B, L, Hkv, 128)
        assert q.dtype == k.dtype == torch.bfloat16
        assert bool(torch.isfinite(q.float()).all() and torch.isfinite(k.float()).all())
        again = structured_inputs(B, L, Hq, Hkv, level=level, seed=3, device="cpu", chunk=C)
        assert torch.equal(again[0], q) and torch.equal(again[1], k)
        assert torch.equal(again[3]["need"], truth["need"])
        other = structured_inputs(B, L, Hq, Hkv, level=level, seed=4, device="cpu", chunk=C)
        assert not torch.equal(other[1], k)
        assert int((truth["needle_pos"] + truth["needle_len"]).max()) <= L - C
        # Only the needle heads need needles, on few rows of the last chunk.
        c0 = L - C
        need = truth["need"][:, c0:]
        heads = [h for h in range(Hq) if bool((need[..., h] >= 0).any())]
        assert heads == [h for h in range(Hq) if truth["profile"][h] == 0], heads
        rows = LEVELS[level]["needle_rows"] * LEVELS[level]["needles"]
        assert all(int((need[0, :, h] >= 0).sum()) == rows for h in heads)
        # Dense attention retrieves every needle.
        out = dense_attention(q[:, c0:], k, v, c0)
        b, i, h = (need >= 0).nonzero(as_tuple=True)
        dirs = truth["needle_value"][b, h // G, need[b, i, h]]
        cos = F.cosine_similarity(out[b, i, h], dirs, dim=-1)
        assert float(cos.min()) > THRESH, (level, float(cos.min()))
        # Rows that need no needle do not carry its value.
        free = (need < 0).nonzero(as_tuple=True)
        cos_free = F.cosine_similarity(out[free], truth["needle_value"][0, free[2] // G, 0], -1)
        assert float(cos_free.abs().mean()) < 0.2, float(cos_free.abs().mean())


if __name__ == "__main__":
    test_baselines()
    test_table_keep()
    test_rope_is_relative()
    test_structured()
    print("ok")
