"""The compact_rt runtime on torch tensors (zero copy).

Every method checks its tensors (device, dtype, shape, contiguity,
alignment) and raises ValueError naming the argument and what was expected,
then launches on the current CUDA stream without synchronising.
"""

import ctypes
import math

from . import _native

_DTYPES = {"bfloat16": 0, "float16": 1}


class CompactError(RuntimeError):
    """A failure reported by the runtime (its message names the argument)."""


def _check_slack(value, name):
    """A slack of the execution-group choice: a finite number >= 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"argument '{name}': expected a finite number >= 0, got {value!r}")
    return float(value)


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise RuntimeError("compact_attention needs PyTorch for tensors") from e
    return torch


class Runtime:
    """Kernels of one configuration: heads, head dim, page and block size,
    data type and cache layout (what the generated code is specialised on)."""

    def __init__(self, q_heads, kv_heads, head_dim, page_size=64, block_size=128,
                 dtype="bfloat16", layout="nhd", device=None, dry_run=False, matrix_path=None,
                 checks=False, kv_splits=None, clusters=None):
        torch = _torch()
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).replace("torch.", "")
        if dtype not in _DTYPES:
            raise ValueError(f"argument 'dtype': expected torch.bfloat16 or torch.float16, got {dtype}")
        if layout not in ("nhd", "hnd"):
            raise ValueError(f"argument 'layout': expected 'nhd' or 'hnd', got {layout!r}")
        if q_heads % kv_heads:
            raise ValueError(f"argument 'q_heads' ({q_heads}) must be a multiple of "
                             f"'kv_heads' ({kv_heads})")
        self.config = _native.Config(q_heads, kv_heads, head_dim, page_size, block_size,
                                     _DTYPES[dtype], 0 if layout == "nhd" else 1)
        self.q_heads, self.kv_heads, self.head_dim = q_heads, kv_heads, head_dim
        self.page_size, self.block_size, self.layout = page_size, block_size, layout
        self.dtype = getattr(torch, dtype)
        self.dry_run = dry_run
        lib = _native.library()
        handle = ctypes.c_void_p()
        if dry_run:
            status = lib.compact_rt_create_dry_run(ctypes.byref(handle))
            self.device = torch.device("cuda", 0)
        else:
            if not torch.cuda.is_available():
                raise RuntimeError("compact_attention: no CUDA device is visible to PyTorch; the "
                                   "GPU kernels need an NVIDIA Hopper GPU (sm_90a). The CPU path "
                                   "is the compact-run tool.")
            self.device = torch.device("cuda", torch.cuda.current_device() if device is None
                                       else device)
            torch.cuda.init()
            status = lib.compact_rt_create(self.device.index, ctypes.byref(handle))
        if status != _native.OK:
            raise CompactError(_native.last_error())
        self._handle = handle
        self._lib = lib
        if matrix_path is not None:
            if lib.compact_rt_set_matrix_path(handle, matrix_path.encode()) != _native.OK:
                raise ValueError(_native.last_error())
        if kv_splits is not None:
            self.set_kv_splits(kv_splits)
        if clusters is not None:
            self.set_clusters(clusters)
        if checks:
            # Debug mode: every call validates the metadata and tables it
            # reads on the host before launching (synchronises each call).
            lib.compact_rt_set_checks(handle, 1)

    def __del__(self):
        handle = getattr(self, "_handle", None)
        if handle:
            self._lib.compact_rt_destroy(handle)
            self._handle = None

    @property
    def group_size(self):
        return self.q_heads // self.kv_heads

    def supports(self, exec_group_size):
        return bool(self._lib.compact_rt_supports(self._handle, ctypes.byref(self.config),
                                                  exec_group_size))

    def set_kv_splits(self, splits):
        """Split-KV of paged_attention: 0 chooses from the work (splits when
        the grid would leave SMs idle), 1 never splits, 2..16 pins it."""
        if isinstance(splits, bool) or not isinstance(splits, int):
            raise ValueError(f"argument 'splits': expected an int in [0, 16], got {splits!r}")
        if self._lib.compact_rt_set_kv_splits(self._handle, splits) != _native.OK:
            raise ValueError(_native.last_error())

    _CLUSTERS = {"auto": 0, "never": 1, "always": 2}

    def set_clusters(self, clusters):
        """Thread-block clusters of paged_attention: "auto" pairs row tiles
        that walk the same table row (TMA multicast of each K / V tile to
        both), "never" launches plain blocks, "always" clusters whenever the
        grid allows (for tests). Same results either way."""
        if clusters not in self._CLUSTERS:
            raise ValueError("argument 'clusters': expected 'auto', 'never' or 'always', "
                             f"got {clusters!r}")
        if self._lib.compact_rt_set_clusters(self._handle, self._CLUSTERS[clusters]) != _native.OK:
            raise ValueError(_native.last_error())

    def dry_run_log(self):
        return self._lib.compact_rt_dry_run_log(self._handle).decode()

    # -- checks -------------------------------------------------------------

    def _check(self, t, name, dtype, shape, alignment=16):
        torch = _torch()
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"argument '{name}': expected a torch.Tensor, got {type(t).__name__}")
        if not self.dry_run and t.device != self.device:
            raise ValueError(f"argument '{name}': expected a tensor on {self.device}, got {t.device}")
        if t.dtype != dtype:
            raise ValueError(f"argument '{name}': expected dtype {dtype}, got {t.dtype}")
        if len(shape) != t.dim() or any(e is not None and e != g for e, g in zip(shape, t.shape)):
            want = "(" + ", ".join("*" if e is None else str(e) for e in shape) + ")"
            raise ValueError(f"argument '{name}': expected shape {want}, got {tuple(t.shape)}")
        if not t.is_contiguous():
            raise ValueError(f"argument '{name}': must be contiguous")
        if t.data_ptr() % alignment:
            raise ValueError(f"argument '{name}': data must be aligned to {alignment} bytes")
        return ctypes.c_void_p(t.data_ptr())

    def _dims(self, t, name, rank):
        """The shape of `t` once it is known to be a tensor of `rank`
        dimensions (read before the full check, which needs the sizes)."""
        torch = _torch()
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"argument '{name}': expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() != rank:
            raise ValueError(f"argument '{name}': expected {rank} dimensions, got shape "
                             f"{tuple(t.shape)}")
        return t.shape

    def _cache_shape(self, num_pages):
        if self.layout == "nhd":
            return (num_pages, self.page_size, self.kv_heads, self.head_dim)
        return (num_pages, self.kv_heads, self.page_size, self.head_dim)

    def _shape(self, batch, chunk_len, num_pages=1, max_pages=None, capacity=None,
               per_query_block=False):
        if max_pages is None:
            max_pages = -(-chunk_len // self.page_size)
        if capacity is None:
            capacity = -(-chunk_len // self.block_size)
        return _native.Shape(batch, chunk_len, num_pages, max_pages, capacity,
                             int(per_query_block))

    def _call(self, fn, *args):
        status = getattr(self._lib, fn)(self._handle, ctypes.byref(self.config), *args)
        if status != _native.OK:
            raise CompactError(_native.last_error())

    def _stream(self):
        if self.dry_run:
            return None
        torch = _torch()
        return ctypes.c_void_p(torch.cuda.current_stream(self.device).cuda_stream)

    def _lens_and_pages(self, ctx_lens, page_table, batch):
        torch = _torch()
        lens = self._check(ctx_lens, "ctx_lens", torch.int32, (batch,), 4)
        pages = self._check(page_table, "page_table", torch.int32, (batch, None), 4)
        return lens, pages

    @staticmethod
    def _selection(alpha, sink, window):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"argument 'alpha': expected a value in (0, 1], got {alpha}")
        if sink < 0 or window < 0:
            raise ValueError("arguments 'sink' and 'window' must be non-negative")
        return _native.Selection(alpha, sink, window)

    def _scale(self, scale):
        if scale is None:
            return 0.0
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"argument 'scale': expected a positive finite value, got {scale}")
        return float(scale)

    def _group(self, exec_group_size):
        s = self.group_size if exec_group_size is None else exec_group_size
        if s <= 0 or self.group_size % s:
            raise ValueError(f"argument 'exec_group_size' ({s}) must divide q_heads / kv_heads "
                             f"({self.group_size})")
        return s

    # -- ops ----------------------------------------------------------------

    def append_kv(self, k_new, v_new, k_cache, v_cache, page_table, ctx_lens):
        B, C = self._dims(k_new, "k_new", 4)[:2]
        kv = (B, C, self.kv_heads, self.head_dim)
        k = self._check(k_new, "k_new", self.dtype, kv)
        v = self._check(v_new, "v_new", self.dtype, kv)
        cache = self._cache_shape(self._dims(k_cache, "k_cache", 4)[0])
        kc = self._check(k_cache, "k_cache", self.dtype, cache)
        vc = self._check(v_cache, "v_cache", self.dtype, cache)
        lens, pages = self._lens_and_pages(ctx_lens, page_table, B)
        shape = self._shape(B, C, k_cache.shape[0], page_table.shape[1],
                            -(-page_table.shape[1] * self.page_size // self.block_size))
        self._call("compact_rt_append_kv", ctypes.byref(shape), k, v, pages, lens, kc, vc,
                   self._stream())

    def pool_keys(self, k_cache, page_table, ctx_lens, pooled, chunk_len):
        B = self._dims(ctx_lens, "ctx_lens", 1)[0]
        kc = self._check(k_cache, "k_cache", self.dtype,
                         self._cache_shape(self._dims(k_cache, "k_cache", 4)[0]))
        lens, pages = self._lens_and_pages(ctx_lens, page_table, B)
        p = self._check(pooled, "pooled", self.dtype, (B, self.kv_heads, None, self.head_dim))
        shape = self._shape(B, chunk_len, k_cache.shape[0], page_table.shape[1], pooled.shape[2])
        self._call("compact_rt_pool_keys", ctypes.byref(shape), kc, pages, lens, p, self._stream())

    def block_scores(self, q, pooled, ctx_lens, scores, scale=None):
        torch = _torch()
        B, C = self._dims(q, "q", 4)[:2]
        qp = self._check(q, "q", self.dtype, (B, C, self.q_heads, self.head_dim))
        p = self._check(pooled, "pooled", self.dtype, (B, self.kv_heads, None, self.head_dim))
        lens = self._check(ctx_lens, "ctx_lens", torch.int32, (B,), 4)
        qb = -(-C // self.block_size)
        s = self._check(scores, "scores", torch.float32, (B, self.q_heads, qb, pooled.shape[2]), 4)
        shape = self._shape(B, C, capacity=pooled.shape[2])
        self._call("compact_rt_block_scores", ctypes.byref(shape), qp, p, lens,
                   self._scale(scale), s, self._stream())

    def select_blocks(self, scores, ctx_lens, chunk_len, mask, alpha, sink=0, window=0):
        torch = _torch()
        B, _, qb, kb = self._dims(scores, "scores", 4)
        s = self._check(scores, "scores", torch.float32, (B, self.q_heads, qb, kb), 4)
        lens = self._check(ctx_lens, "ctx_lens", torch.int32, (B,), 4)
        m = self._check(mask, "mask", torch.int8, (B, self.q_heads, qb, kb), 1)
        sel = self._selection(alpha, sink, window)
        shape = self._shape(B, chunk_len, capacity=kb)
        self._call("compact_rt_select_blocks", ctypes.byref(shape), s, lens, ctypes.byref(sel), m,
                   self._stream())

    def _tables(self, table, counts, B, s, chunk_len):
        """Checks the tables; returns their pointers and whether they hold one
        table per query block (E * Qb rows) rather than one per execution
        group (E = Hq / s rows)."""
        torch = _torch()
        E, qb = self.q_heads // s, -(-chunk_len // self.block_size)
        rows = table.shape[1] if isinstance(table, torch.Tensor) and table.dim() == 3 else E
        if rows not in (E, E * qb):
            raise ValueError(f"argument 'table': expected {E} rows per sequence (Hq / s = "
                             f"{self.q_heads} / {s}) or {E * qb} (one table per query block, "
                             f"{E} * {qb}), got {rows}")
        t = self._check(table, "table", torch.int32, (B, rows, None), 4)
        c = self._check(counts, "counts", torch.int32, (B, rows), 4)
        return t, c, rows != E

    def block_union(self, mask, ctx_lens, chunk_len, table, counts, exec_group_size=None):
        torch = _torch()
        s = self._group(exec_group_size)
        B, _, qb, kb = self._dims(mask, "mask", 4)
        m = self._check(mask, "mask", torch.int8, (B, self.q_heads, qb, kb), 1)
        lens = self._check(ctx_lens, "ctx_lens", torch.int32, (B,), 4)
        t, c, per_qb = self._tables(table, counts, B, s, chunk_len)
        if table.shape[2] != kb:
            raise ValueError(f"argument 'table': expected {kb} blocks per row like 'mask', "
                             f"got {table.shape[2]}")
        shape = self._shape(B, chunk_len, capacity=kb, per_query_block=per_qb)
        self._call("compact_rt_block_union", ctypes.byref(shape), s, m, lens, t, c, self._stream())

    def select_union(self, scores, ctx_lens, chunk_len, table, counts, alpha, sink=0, window=0,
                     exec_group_size=None):
        torch = _torch()
        s = self._group(exec_group_size)
        B, _, qb, kb = self._dims(scores, "scores", 4)
        sc = self._check(scores, "scores", torch.float32, (B, self.q_heads, qb, kb), 4)
        lens = self._check(ctx_lens, "ctx_lens", torch.int32, (B,), 4)
        t, c, per_qb = self._tables(table, counts, B, s, chunk_len)
        sel = self._selection(alpha, sink, window)
        shape = self._shape(B, chunk_len, capacity=kb, per_query_block=per_qb)
        self._call("compact_rt_select_union", ctypes.byref(shape), s, sc, lens, ctypes.byref(sel),
                   t, c, self._stream())

    def score_select_union(self, q, pooled, ctx_lens, table, counts, alpha, sink=0, window=0,
                           exec_group_size=None, scale=None):
        torch = _torch()
        s = self._group(exec_group_size)
        B, C = self._dims(q, "q", 4)[:2]
        qp = self._check(q, "q", self.dtype, (B, C, self.q_heads, self.head_dim))
        p = self._check(pooled, "pooled", self.dtype, (B, self.kv_heads, None, self.head_dim))
        lens = self._check(ctx_lens, "ctx_lens", torch.int32, (B,), 4)
        t, c, per_qb = self._tables(table, counts, B, s, C)
        sel = self._selection(alpha, sink, window)
        shape = self._shape(B, C, capacity=table.shape[2], per_query_block=per_qb)
        self._call("compact_rt_score_select_union", ctypes.byref(shape), s, qp, p, lens,
                   self._scale(scale), ctypes.byref(sel), t, c, self._stream())

    def choose_exec_groups(self, table, counts, chunk_len, slack):
        """The execution-group cost model, in place on per-head tables (as
        `score_select_union(..., exec_group_size=1)` writes them): per KV
        group and table row, the largest sub-group size whose work is within
        (1 + slack) of the per-head tables' replaces each head's row by its
        sub-group's union."""
        slack = _check_slack(slack, "slack")
        B = self._dims(table, "table", 3)[0]
        t, c, per_qb = self._tables(table, counts, B, 1, chunk_len)
        shape = self._shape(B, chunk_len, capacity=table.shape[2], per_query_block=per_qb)
        self._call("compact_rt_choose_exec_groups", ctypes.byref(shape), ctypes.c_float(slack),
                   t, c, self._stream())

    def dense_table(self, ctx_lens, table, counts, exec_group_size=None, chunk_len=1):
        torch = _torch()
        s = self._group(exec_group_size)
        B = self._dims(ctx_lens, "ctx_lens", 1)[0]
        lens = self._check(ctx_lens, "ctx_lens", torch.int32, (B,), 4)
        t, c, per_qb = self._tables(table, counts, B, s, chunk_len)
        shape = self._shape(B, chunk_len, capacity=table.shape[2], per_query_block=per_qb)
        self._call("compact_rt_dense_table", ctypes.byref(shape), s, lens, t, c, self._stream())

    def paged_attention(self, q, k_cache, v_cache, page_table, ctx_lens, table, counts, out,
                        lse=None, exec_group_size=None, scale=None):
        torch = _torch()
        s = self._group(exec_group_size)
        B, C = self._dims(q, "q", 4)[:2]
        rows = (B, C, self.q_heads, self.head_dim)
        qp = self._check(q, "q", self.dtype, rows)
        cache = self._cache_shape(self._dims(k_cache, "k_cache", 4)[0])
        kc = self._check(k_cache, "k_cache", self.dtype, cache)
        vc = self._check(v_cache, "v_cache", self.dtype, cache)
        lens, pages = self._lens_and_pages(ctx_lens, page_table, B)
        t, c, per_qb = self._tables(table, counts, B, s, C)
        o = self._check(out, "out", self.dtype, rows)
        lp = None
        if lse is not None:
            lp = self._check(lse, "lse", torch.float32, (B, self.q_heads, C), 4)
        shape = self._shape(B, C, k_cache.shape[0], page_table.shape[1], table.shape[2],
                            per_query_block=per_qb)
        self._call("compact_rt_paged_attention", ctypes.byref(shape), s, qp, kc, vc, pages, lens,
                   t, c, self._scale(scale), o, lp, self._stream())

    def check_metadata(self, page_table, ctx_lens, chunk_len, num_pages, block_capacity):
        """Validates ctx_lens and page_table on the host (synchronises)."""
        B = self._dims(ctx_lens, "ctx_lens", 1)[0]
        lens, pages = self._lens_and_pages(ctx_lens, page_table, B)
        shape = self._shape(B, chunk_len, num_pages, page_table.shape[1], block_capacity)
        self._call("compact_rt_check_metadata", ctypes.byref(shape), pages, lens, self._stream())

    def check_tables(self, table, counts, ctx_lens, chunk_len, exec_group_size=None):
        """Validates block tables as paged_attention reads them: counts within
        the table, entries KV blocks of the context, strictly ascending
        (synchronises)."""
        s = self._group(exec_group_size)
        B = self._dims(ctx_lens, "ctx_lens", 1)[0]
        torch = _torch()
        lens = self._check(ctx_lens, "ctx_lens", torch.int32, (B,), 4)
        t, c, per_qb = self._tables(table, counts, B, s, chunk_len)
        # No page table is read: the shape's page rows only need to hold the
        # contexts the tables can address.
        Kb = table.shape[2]
        shape = self._shape(B, chunk_len, max_pages=-(-Kb * self.block_size // self.page_size),
                            capacity=Kb, per_query_block=per_qb)
        self._call("compact_rt_check_tables", ctypes.byref(shape), s, lens, t, c, self._stream())
