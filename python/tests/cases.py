"""Random chunk-step problems on the GPU, and an fp64 attention reference in
torch that never looks at pages the way the kernels do (it gathers each
sequence's keys first)."""

import math

import torch

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16}

# (Hq, Hkv, D, page, block, dtype, layout, exec group sizes): the kernel
# library (compact::codegen::defaultLibrary).
LIBRARY = [
    (16, 4, 128, 64, 128, "bf16", "nhd", (1, 2, 4)),
    (16, 4, 128, 128, 128, "bf16", "hnd", (4,)),
    (32, 8, 64, 64, 128, "f16", "nhd", (2, 4)),
    (28, 4, 128, 64, 128, "bf16", "nhd", (1, 7)),
    (16, 4, 128, 64, 64, "bf16", "nhd", (4,)),
    (32, 8, 128, 64, 128, "bf16", "nhd", (1, 4)),
]


def make_case(gen, B, C, lens, Hq, Hkv, D, PS, bs, dtype="bf16", layout="nhd", capacity_slack=1,
              spare_pages=5, device="cuda"):
    """Shapes, a shuffled page table, and a K/V cache of random data."""
    assert len(lens) == B and all(l >= C for l in lens)
    max_len = max(lens)
    max_pages = -(-max_len // PS) + 1
    num_pages = sum(-(-l // PS) for l in lens) + spare_pages
    perm = torch.randperm(num_pages, generator=gen)
    page_table = torch.full((B, max_pages), -1, dtype=torch.int32)
    at = 0
    for b, l in enumerate(lens):
        n = -(-l // PS)
        page_table[b, :n] = perm[at:at + n].to(torch.int32)
        at += n
    dt = DTYPES[dtype]
    cache_shape = (num_pages, PS, Hkv, D) if layout == "nhd" else (num_pages, Hkv, PS, D)
    k_cache = torch.randn(cache_shape, generator=gen).to(dt).to(device)
    v_cache = torch.randn(cache_shape, generator=gen).to(dt).to(device)
    q = torch.randn((B, C, Hq, D), generator=gen).to(dt).to(device)
    return {
        "B": B, "C": C, "Hq": Hq, "Hkv": Hkv, "D": D, "PS": PS, "bs": bs, "dtype": dtype,
        "layout": layout, "num_pages": num_pages, "max_pages": max_pages,
        "Kb": -(-max_len // bs) + capacity_slack,
        "lens": torch.tensor(lens, dtype=torch.int32, device=device),
        "page_table": page_table.to(device), "k_cache": k_cache, "v_cache": v_cache, "q": q,
    }


def gather_keys(case, cache, b, kv):
    """[L_b, D] keys (or values) of sequence b, kv head kv, in token order."""
    L = int(case["lens"][b])
    PS = case["PS"]
    pages = case["page_table"][b, : -(-L // PS)].long()
    if case["layout"] == "nhd":
        rows = cache[pages, :, kv, :]          # [n, PS, D]
    else:
        rows = cache[pages, kv, :, :]          # [n, PS, D]
    return rows.reshape(-1, case["D"])[:L]


def reference_attention(case, table, counts, s, scale=None):
    """fp64 attention over the tables: out [B, C, Hq, D], lse [B, Hq, C]."""
    B, C, Hq, Hkv, D, bs = case["B"], case["C"], case["Hq"], case["Hkv"], case["D"], case["bs"]
    G = Hq // Hkv
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    out = torch.zeros((B, C, Hq, D), dtype=torch.float64, device=case["q"].device)
    lse = torch.full((B, Hq, C), -math.inf, dtype=torch.float64, device=case["q"].device)
    for b in range(B):
        L = int(case["lens"][b])
        P = L - C
        pos = P + torch.arange(C, device=out.device)
        j = torch.arange(L, device=out.device)
        causal = j[None, :] <= pos[:, None]
        for kv in range(Hkv):
            K = gather_keys(case, case["k_cache"], b, kv).double()
            V = gather_keys(case, case["v_cache"], b, kv).double()
            for h in range(kv * G, (kv + 1) * G):
                e = h // s
                # Table rows per group: 1, or Qb (row e * Qb + t // bs).
                T = table.shape[1] // (Hq // s)
                t_rows = (e * T + (torch.arange(C, device=out.device) // bs if T > 1 else
                                   torch.zeros(C, dtype=torch.long, device=out.device)))
                in_table = torch.zeros((T, -(-L // bs)), dtype=torch.bool, device=out.device)
                for r in range(T):
                    blocks = table[b, e * T + r, : int(counts[b, e * T + r])].long()
                    in_table[r, blocks] = True
                allowed = causal & in_table[t_rows - e * T][:, j // bs]
                logits = (case["q"][b, :, h, :].double() @ K.T) * scale
                logits = logits.masked_fill(~allowed, -math.inf)
                m = logits.max(dim=1, keepdim=True).values
                seen = torch.isfinite(m)
                m = torch.where(seen, m, torch.zeros_like(m))
                p = torch.exp(logits - m)
                l = p.sum(dim=1, keepdim=True)
                o = (p @ V) / torch.where(l > 0, l, torch.ones_like(l))
                out[b, :, h, :] = o
                lse[b, h, :] = torch.where(l[:, 0] > 0, (m + torch.log(l))[:, 0],
                                           torch.full_like(l[:, 0], -math.inf))
    return out, lse


def rel_err(a, b):
    a = a.double()
    b = b.double()
    den = torch.linalg.norm(b)
    return float(torch.linalg.norm(a - b) / (den if den > 0 else 1.0))
