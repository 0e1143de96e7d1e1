"""The standard workload of BENCH.md ("planted retrieval") on the GPU, and a
paged KV cache holding it."""

import torch


def planted_retrieval(B, L, Hq=16, Hkv=4, D=128, block=128, hot_frac=0.04, signal=8.0,
                      seed=0, dtype=torch.bfloat16, device="cuda"):
    """q [B, L, Hq, D], k / v [B, L, Hkv, D]: standard normal; for each
    (sequence, query head) a random unit direction u; hot_frac of the KV
    blocks of the head's KV head get signal * u added to every key, and every
    query of the head gets signal * u."""
    g = torch.Generator(device=device).manual_seed(seed)
    G = Hq // Hkv
    q = torch.randn((B, L, Hq, D), generator=g, device=device, dtype=torch.float32)
    k = torch.randn((B, L, Hkv, D), generator=g, device=device, dtype=torch.float32)
    v = torch.randn((B, L, Hkv, D), generator=g, device=device, dtype=torch.float32)
    nb = -(-L // block)
    hot = max(1, round(hot_frac * nb))
    for b in range(B):
        u = torch.randn((Hq, D), generator=g, device=device)
        u = signal * u / u.norm(dim=1, keepdim=True)
        q[b] += u[None, :, :]
        for h in range(Hq):
            blocks = torch.randperm(nb, generator=g, device=device)[:hot]
            tok = (blocks[:, None] * block + torch.arange(block, device=device)[None, :]).flatten()
            tok = tok[tok < L]
            k[b, tok, h // G, :] += u[h]
    return q.to(dtype), k.to(dtype), v.to(dtype)


class PagedCache:
    """A page pool and page tables for B sequences of up to max_len tokens;
    pages are handed out shuffled so logical and physical order differ."""

    def __init__(self, B, max_len, Hkv, D, page_size=64, dtype=torch.bfloat16, layout="nhd",
                 seed=0, device="cuda"):
        self.page_size = page_size
        self.max_pages = -(-max_len // page_size)
        self.num_pages = B * self.max_pages
        shape = ((self.num_pages, page_size, Hkv, D) if layout == "nhd"
                 else (self.num_pages, Hkv, page_size, D))
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(self.num_pages, generator=g).to(torch.int32)
        self.page_table = perm.reshape(B, self.max_pages).to(device)
