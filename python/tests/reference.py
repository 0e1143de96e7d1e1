"""The C++ reference semantics (libcompact_reference) on torch tensors."""

import ctypes
import os
from pathlib import Path

import torch


class RefShape(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int64) for n in (
        "batch", "chunk_len", "q_heads", "kv_heads", "head_dim", "block_size", "block_capacity",
        "num_pages", "page_size", "max_pages_per_seq", "layout")]


def _load():
    env = os.environ.get("COMPACT_REFERENCE_LIBRARY")
    here = Path(__file__).resolve()
    for path in ([Path(env)] if env else []) + [
            here.parents[1] / "compact_attention" / "_lib" / "libcompact_reference.so",
            here.parents[2] / "build" / "lib" / "libcompact_reference.so"]:
        if path.exists():
            return ctypes.CDLL(str(path))
    raise RuntimeError("libcompact_reference.so not found")


_lib = _load()


def _ptr(t):
    assert t.device.type == "cpu" and t.is_contiguous()
    return ctypes.c_void_p(t.data_ptr())


def shape_of(case, chunk_len=None, capacity=None):
    return RefShape(case["B"], case["C"] if chunk_len is None else chunk_len, case["Hq"],
                    case["Hkv"], case["D"], case["bs"],
                    case["Kb"] if capacity is None else capacity,
                    case["num_pages"], case["PS"], case["max_pages"],
                    0 if case["layout"] == "nhd" else 1)


def cpu_i32(t):
    return t.detach().to("cpu", torch.int32).contiguous()


def cpu_f32(t):
    return t.detach().to("cpu", torch.float32).contiguous()


class _Args:
    """Keeps the CPU copies alive for the duration of a call (a pointer to a
    temporary tensor would dangle)."""

    def __init__(self):
        self.keep = []

    def ptr(self, t):
        self.keep.append(t)
        return _ptr(t)


def select_blocks(case, scores, alpha, sink, window):
    """mask [B, Hq, Qb, Kb] uint8 from scores (rowmax_log rule)."""
    a = _Args()
    s = cpu_f32(scores)
    mask = torch.zeros(s.shape, dtype=torch.uint8)
    _lib.compact_ref_select_blocks(ctypes.byref(shape_of(case)), a.ptr(cpu_i32(case["lens"])),
                                   a.ptr(s), 0, ctypes.c_float(alpha), ctypes.c_int64(sink),
                                   ctypes.c_int64(window), a.ptr(mask))
    return mask


def rows_per_group(case, per_query_block):
    """Table rows per execution group: 1, or Qb (one table per query block)."""
    return -(-case["C"] // case["bs"]) if per_query_block else 1


def block_union(case, mask, s, per_query_block=False):
    a = _Args()
    B, Hq, Kb = case["B"], case["Hq"], case["Kb"]
    T = rows_per_group(case, per_query_block)
    table = torch.zeros((B, Hq // s * T, Kb), dtype=torch.int32)
    counts = torch.zeros((B, Hq // s * T), dtype=torch.int32)
    m = mask.detach().to("cpu").to(torch.uint8).contiguous()
    _lib.compact_ref_block_union(ctypes.byref(shape_of(case)), a.ptr(cpu_i32(case["lens"])),
                                 a.ptr(m), ctypes.c_int64(s), ctypes.c_int64(T), a.ptr(table),
                                 a.ptr(counts))
    return table, counts


def choose_exec_groups(case, table, counts, slack):
    """The execution-group cost model on per-head tables (copies)."""
    a = _Args()
    t = table.detach().to("cpu").to(torch.int32).contiguous().clone()
    c = counts.detach().to("cpu").to(torch.int32).contiguous().clone()
    rows_per_head = t.shape[1] // case["Hq"]
    _lib.compact_ref_choose_exec_groups(ctypes.byref(shape_of(case)), ctypes.c_int64(rows_per_head),
                                        ctypes.c_float(slack), a.ptr(t), a.ptr(c))
    return t, c


def dense_table(case, s, per_query_block=False):
    a = _Args()
    B, Hq, Kb = case["B"], case["Hq"], case["Kb"]
    T = rows_per_group(case, per_query_block)
    table = torch.zeros((B, Hq // s * T, Kb), dtype=torch.int32)
    counts = torch.zeros((B, Hq // s * T), dtype=torch.int32)
    _lib.compact_ref_dense_table(ctypes.byref(shape_of(case)), a.ptr(cpu_i32(case["lens"])),
                                 ctypes.c_int64(s), ctypes.c_int64(T), a.ptr(table),
                                 a.ptr(counts))
    return table, counts


def pool_keys(case, k_cache, pooled_init):
    a = _Args()
    pooled = cpu_f32(pooled_init)
    _lib.compact_ref_pool_keys(ctypes.byref(shape_of(case)), a.ptr(cpu_i32(case["lens"])),
                               a.ptr(cpu_i32(case["page_table"])), a.ptr(cpu_f32(k_cache)),
                               a.ptr(pooled))
    return pooled


def block_scores(case, q, pooled, scale):
    a = _Args()
    B, Hq, Kb = case["B"], case["Hq"], case["Kb"]
    qb = -(-case["C"] // case["bs"])
    scores = torch.zeros((B, Hq, qb, Kb), dtype=torch.float32)
    _lib.compact_ref_block_scores(ctypes.byref(shape_of(case)), a.ptr(cpu_i32(case["lens"])),
                                  a.ptr(cpu_f32(q)), a.ptr(cpu_f32(pooled)), ctypes.c_float(scale),
                                  a.ptr(scores))
    return scores
