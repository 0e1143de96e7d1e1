"""compact_attention: CompactAttention's generated kernels for PyTorch.

    from compact_attention import Runtime
    rt = Runtime(q_heads=16, kv_heads=4, head_dim=128)   # bf16, pages of 64, blocks of 128
    rt.score_select_union(q, pooled, ctx_lens, table, counts, alpha=0.06, sink=2, window=4)
    rt.paged_attention(q, k_cache, v_cache, page_table, ctx_lens, table, counts, out)

Importing needs neither a GPU nor PyTorch; using the GPU kernels needs both
(and an sm_90a device).
"""

from ._native import Config, Selection, Shape, last_error, library
from .prefill import ChunkedPrefill, chunked_prefill_attention, register
from .runtime import CompactError, Runtime

__all__ = ["Runtime", "ChunkedPrefill", "chunked_prefill_attention", "register", "CompactError",
           "Config", "Shape", "Selection", "library", "last_error"]
