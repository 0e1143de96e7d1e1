"""ctypes bindings of libcompact_rt (runtime/include/compact_rt.h).

The library is found through $COMPACT_RT_LIBRARY, then next to this package
(compact_attention/_lib), then in a build tree (build/lib). Loading it never
needs a GPU; creating a context does.
"""

import ctypes
import os
from pathlib import Path

OK, INVALID_ARGUMENT, NO_DRIVER, CUDA_ERROR, UNSUPPORTED = range(5)


class Config(ctypes.Structure):
    _fields_ = [("q_heads", ctypes.c_int32), ("kv_heads", ctypes.c_int32),
                ("head_dim", ctypes.c_int32), ("page_size", ctypes.c_int32),
                ("block_size", ctypes.c_int32), ("dtype", ctypes.c_int),
                ("layout", ctypes.c_int)]


class Shape(ctypes.Structure):
    _fields_ = [("batch", ctypes.c_int32), ("chunk_len", ctypes.c_int32),
                ("num_pages", ctypes.c_int32), ("max_pages_per_seq", ctypes.c_int32),
                ("block_capacity", ctypes.c_int32), ("per_query_block", ctypes.c_int32)]


class Selection(ctypes.Structure):
    _fields_ = [("alpha", ctypes.c_float), ("sink", ctypes.c_int32), ("window", ctypes.c_int32)]


_P = ctypes.c_void_p
_CFG = ctypes.POINTER(Config)
_SHP = ctypes.POINTER(Shape)
_SEL = ctypes.POINTER(Selection)
_I32 = ctypes.c_int32
_F32 = ctypes.c_float

_SIGNATURES = {
    "compact_rt_last_error": (ctypes.c_char_p, []),
    "compact_rt_create": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(_P)]),
    "compact_rt_create_dry_run": (ctypes.c_int, [ctypes.POINTER(_P)]),
    "compact_rt_dry_run_log": (ctypes.c_char_p, [_P]),
    "compact_rt_destroy": (None, [_P]),
    "compact_rt_supports": (ctypes.c_int, [_P, _CFG, _I32]),
    "compact_rt_set_matrix_path": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "compact_rt_append_kv": (ctypes.c_int, [_P, _CFG, _SHP, _P, _P, _P, _P, _P, _P, _P]),
    "compact_rt_pool_keys": (ctypes.c_int, [_P, _CFG, _SHP, _P, _P, _P, _P, _P]),
    "compact_rt_block_scores": (ctypes.c_int, [_P, _CFG, _SHP, _P, _P, _P, _F32, _P, _P]),
    "compact_rt_select_blocks": (ctypes.c_int, [_P, _CFG, _SHP, _P, _P, _SEL, _P, _P]),
    "compact_rt_block_union": (ctypes.c_int, [_P, _CFG, _SHP, _I32, _P, _P, _P, _P, _P]),
    "compact_rt_select_union": (ctypes.c_int, [_P, _CFG, _SHP, _I32, _P, _P, _SEL, _P, _P, _P]),
    "compact_rt_score_select_union": (ctypes.c_int,
                                      [_P, _CFG, _SHP, _I32, _P, _P, _P, _F32, _SEL, _P, _P, _P]),
    "compact_rt_choose_exec_groups": (ctypes.c_int, [_P, _CFG, _SHP, _F32, _P, _P, _P]),
    "compact_rt_dense_table": (ctypes.c_int, [_P, _CFG, _SHP, _I32, _P, _P, _P, _P]),
    "compact_rt_paged_attention": (ctypes.c_int, [_P, _CFG, _SHP, _I32, _P, _P, _P, _P, _P, _P,
                                                  _P, _F32, _P, _P, _P]),
    "compact_rt_check_metadata": (ctypes.c_int, [_P, _CFG, _SHP, _P, _P, _P]),
    "compact_rt_check_tables": (ctypes.c_int, [_P, _CFG, _SHP, _I32, _P, _P, _P, _P]),
    "compact_rt_set_checks": (ctypes.c_int, [_P, ctypes.c_int]),
    "compact_rt_set_kv_splits": (ctypes.c_int, [_P, ctypes.c_int32]),
    "compact_rt_set_clusters": (ctypes.c_int, [_P, ctypes.c_int32]),
}


def _candidates():
    env = os.environ.get("COMPACT_RT_LIBRARY")
    if env:
        yield Path(env)
    here = Path(__file__).resolve().parent
    yield here / "_lib" / "libcompact_rt.so"
    for root in (here.parent.parent, Path.cwd()):
        yield root / "build" / "lib" / "libcompact_rt.so"


_library = None


def library():
    """The loaded libcompact_rt, with prototypes set; raises with the places
    it looked when there is none."""
    global _library
    if _library is not None:
        return _library
    tried = []
    for path in _candidates():
        tried.append(str(path))
        if path.exists():
            lib = ctypes.CDLL(str(path))
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.restype = restype
                fn.argtypes = argtypes
            _library = lib
            return lib
    raise RuntimeError("compact_attention: libcompact_rt.so not found; set COMPACT_RT_LIBRARY "
                       "or build it (scripts/quickstart.sh). Looked at: " + ", ".join(tried))


def last_error():
    return library().compact_rt_last_error().decode()
