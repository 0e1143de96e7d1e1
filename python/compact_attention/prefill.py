"""Chunked prefill of one attention layer with CompactAttention, on torch
tensors: the runtime's plan (append K/V into the paged cache, pool keys,
select + union into block tables, paged attention) in one call per chunk,
with no host synchronisation, and a torch.library custom op around it."""

import ctypes
import itertools

from . import _native
from .runtime import CompactError, Runtime, _check_slack, _torch


class PlanDesc(ctypes.Structure):
    _fields_ = [("config", _native.Config), ("exec_group_size", ctypes.c_int32),
                ("selection", _native.Selection), ("scale", ctypes.c_float),
                ("max_batch", ctypes.c_int32), ("block_capacity", ctypes.c_int32),
                ("per_query_block", ctypes.c_int32), ("max_chunk_len", ctypes.c_int32),
                ("group_slack", ctypes.c_float)]


def _prototypes(lib):
    if getattr(lib, "_compact_plan_ready", False):
        return
    P = ctypes.c_void_p
    lib.compact_rt_plan_create.restype = ctypes.c_int
    lib.compact_rt_plan_create.argtypes = [P, ctypes.POINTER(PlanDesc), ctypes.POINTER(P)]
    lib.compact_rt_plan_destroy.restype = None
    lib.compact_rt_plan_destroy.argtypes = [P]
    lib.compact_rt_prefill_chunk.restype = ctypes.c_int
    lib.compact_rt_prefill_chunk.argtypes = [P, ctypes.POINTER(_native.Shape), ctypes.c_int32,
                                             P, P, P, P, P, P, P, P, P, P, P]
    for name in ("compact_rt_plan_table", "compact_rt_plan_counts"):
        getattr(lib, name).restype = ctypes.c_void_p
        getattr(lib, name).argtypes = [P]
    lib._compact_plan_ready = True


class _DeviceArray:
    """A view of device memory the plan owns, for torch.as_tensor."""

    def __init__(self, pointer, shape, typestr):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr,
                                         "data": (pointer, False), "version": 3, "strides": None}


class ChunkedPrefill:
    """One layer: call it once per chunk.

        prefill = ChunkedPrefill(rt, max_batch=8, block_capacity=1024)
        out = prefill(q, k_new, v_new, k_cache, v_cache, page_table, ctx_lens, pooled,
                      max_prefix_len=P)

    `pooled` ([B, Hkv, block_capacity, D]) is the per-sequence cache of
    mean-pooled keys that every chunk extends; `max_prefix_len` is the
    longest prefix of the batch (the plan runs dense while selection would
    keep every block, e.g. on the first chunk).

    `exec_group_size` (s) is how many query heads share a block table (s = G:
    the paper's group union); `per_query_block=True` keeps one table per
    execution group and query block instead of the union over the chunk's
    query blocks (with s = 1: exactly the selected blocks of each head),
    sized for chunks of up to `max_chunk_len` tokens.

    `group_slack` > 0 (with exec_group_size=1) lets the device choose the
    execution group size per KV group and table row: the largest sub-group
    whose union costs at most (1 + group_slack) times the per-head tables'
    work (more blocks: closer to dense attention)."""

    def __init__(self, runtime, max_batch, block_capacity, exec_group_size=None, alpha=0.06,
                 sink=2, window=4, scale=None, per_query_block=False, max_chunk_len=None,
                 group_slack=0.0):
        if not isinstance(runtime, Runtime):
            raise ValueError("argument 'runtime': expected a compact_attention.Runtime")
        self.rt = runtime
        self.s = runtime._group(exec_group_size)
        group_slack = _check_slack(group_slack, "group_slack")
        lib = runtime._lib
        _prototypes(lib)
        if per_query_block and not (max_chunk_len and max_chunk_len > 0):
            raise ValueError("argument 'max_chunk_len': expected a positive chunk length with "
                             f"per_query_block=True, got {max_chunk_len}")
        desc = PlanDesc(runtime.config, self.s, Runtime._selection(alpha, sink, window),
                        runtime._scale(scale), max_batch, block_capacity, int(per_query_block),
                        int(max_chunk_len or 0), group_slack)
        handle = ctypes.c_void_p()
        if lib.compact_rt_plan_create(runtime._handle, ctypes.byref(desc), ctypes.byref(handle)):
            raise CompactError(_native.last_error())
        self._handle, self._lib = handle, lib
        self.max_batch, self.block_capacity = max_batch, block_capacity
        self.per_query_block = bool(per_query_block)
        self._last = (0, 1)  # (B, table rows) of the last chunk

    def __del__(self):
        if getattr(self, "_handle", None):
            self._lib.compact_rt_plan_destroy(self._handle)
            self._handle = None

    def __call__(self, q, k_new, v_new, k_cache, v_cache, page_table, ctx_lens, pooled,
                 max_prefix_len, out=None, lse=None):
        torch = _torch()
        rt = self.rt
        B, C = rt._dims(q, "q", 4)[:2]
        rows = (B, C, rt.q_heads, rt.head_dim)
        kv = (B, C, rt.kv_heads, rt.head_dim)
        if out is None:
            out = torch.empty(rows, dtype=rt.dtype, device=q.device)
        args = [rt._check(q, "q", rt.dtype, rows), rt._check(k_new, "k_new", rt.dtype, kv),
                rt._check(v_new, "v_new", rt.dtype, kv)]
        cache = rt._cache_shape(rt._dims(k_cache, "k_cache", 4)[0])
        args += [rt._check(k_cache, "k_cache", rt.dtype, cache),
                 rt._check(v_cache, "v_cache", rt.dtype, cache)]
        lens, pages = rt._lens_and_pages(ctx_lens, page_table, B)
        args += [pages, lens,
                 rt._check(pooled, "pooled", rt.dtype,
                           (B, rt.kv_heads, self.block_capacity, rt.head_dim)),
                 rt._check(out, "out", rt.dtype, rows)]
        args.append(None if lse is None else
                    rt._check(lse, "lse", torch.float32, (B, rt.q_heads, C), 4))
        shape = _native.Shape(B, C, k_cache.shape[0], page_table.shape[1], self.block_capacity,
                              int(self.per_query_block))
        status = self._lib.compact_rt_prefill_chunk(self._handle, ctypes.byref(shape),
                                                    int(max_prefix_len), *args, rt._stream())
        if status:
            raise CompactError(_native.last_error())
        E = rt.q_heads // self.s
        self._last = (B, E * (-(-C // rt.block_size) if self.per_query_block else 1))
        return out

    def tables(self, batch=None):
        """The last chunk's tables and counts ([B, rows, Kb], [B, rows]: views
        of the plan's memory)."""
        torch = _torch()
        B, rows = self._last
        B = B if batch is None else batch
        table = torch.as_tensor(_DeviceArray(self._lib.compact_rt_plan_table(self._handle),
                                             (B, rows, self.block_capacity), "<i4"),
                                device=self.rt.device)
        counts = torch.as_tensor(_DeviceArray(self._lib.compact_rt_plan_counts(self._handle),
                                              (B, rows), "<i4"), device=self.rt.device)
        return table, counts


# -- torch.library ----------------------------------------------------------

_plans = {}
_ids = itertools.count(1)
_registered = False


def register(prefill):
    """Makes `prefill` callable as torch.ops.compact_attention.prefill_chunk
    (inside torch.compile and CUDA graphs); returns its id."""
    _register_op()
    plan_id = next(_ids)
    _plans[plan_id] = prefill
    return plan_id


def _register_op():
    global _registered
    if _registered:
        return
    torch = _torch()

    @torch.library.custom_op("compact_attention::prefill_chunk",
                             mutates_args=("k_cache", "v_cache", "pooled"))
    def prefill_chunk(q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor,
                      k_cache: torch.Tensor, v_cache: torch.Tensor, page_table: torch.Tensor,
                      ctx_lens: torch.Tensor, pooled: torch.Tensor, max_prefix_len: int,
                      plan_id: int) -> torch.Tensor:
        return _plans[plan_id](q, k_new, v_new, k_cache, v_cache, page_table, ctx_lens, pooled,
                               max_prefix_len)

    @prefill_chunk.register_fake
    def _(q, k_new, v_new, k_cache, v_cache, page_table, ctx_lens, pooled, max_prefix_len,
          plan_id):
        return torch.empty_like(q)

    _registered = True


def chunked_prefill_attention(q, k_new, v_new, k_cache, v_cache, page_table, ctx_lens, pooled,
                              max_prefix_len, plan_id):
    """Drop-in attention call of an engine's chunked prefill step: appends
    the chunk's K/V to the paged cache and returns the chunk's attention
    output, through the registered custom op."""
    torch = _torch()
    return torch.ops.compact_attention.prefill_chunk(q, k_new, v_new, k_cache, v_cache,
                                                     page_table, ctx_lens, pooled,
                                                     int(max_prefix_len), int(plan_id))
