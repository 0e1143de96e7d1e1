"""Hugging Face transformers: chunked prefill of a LLaMA-like model with
CompactAttention's kernels as the model's attention function.

    from compact_attention import hf
    session = hf.ChunkedPrefillSession(model, max_batch=1, max_len=65536, chunk_len=1024)
    out = session.prefill(input_ids)              # out.logits: the last chunk's logits
    cache = session.dynamic_cache()               # the prompt's K/V for HF's own decoding

How it plugs in. `register()` adds `attention_forward` to transformers'
attention registry (`AttentionInterface`, i.e. ALL_ATTENTION_FUNCTIONS) under
a name ("compact"). `prefill` switches the model to that name
(`model.set_attn_implementation`, or `config._attn_implementation` where the
method is missing), feeds the prompt chunk by chunk through the base model
with `use_cache=False` and explicit `position_ids`, and switches back
afterwards. Each attention layer then calls `attention_forward` with the
chunk's post-RoPE q [B, Hq, C, D] and k / v [B, Hkv, C, D] only (no HF cache);
the session's per-layer plan appends k / v to its own paged K/V cache, pools
keys, selects blocks and attends over the whole context so far.

HF's `attention_mask` is ignored: no mask function is registered for the
name, so transformers (>= 4.53) builds none and passes None (older versions
build one, unused), and our kernels apply the causal mask themselves,
bottom-right aligned to the chunk's offset (query t of a chunk at offset c0
sees positions <= c0 + t). Consequences: every sequence of a batch has the
same length (no padding), and models with sliding-window or non-causal
attention are not supported (a `sliding_window` argument is refused).
`scaling` must be the one the plan was built with (the layer's `scaling`
attribute, else 1/sqrt(D)); dropout is ignored (inference only).

Methods:
  "compact"   the plan with the FlashPrefill selector (alpha, sink, window),
              exec_group_size s (default G) and optional per-query-block tables;
              with s = 1, group_slack > 0 lets the device choose sub-group
              unions (ChunkedPrefill).
  "dense"     every block: the same plan with sink = the block capacity. The
              plan writes dense tables (skips scoring) whenever the first query
              block's last KV block index is < sink + window (Plan.cpp); that
              index is at most (max_len - 1) / 128 < capacity = sink, so every
              chunk is dense by construction, not by a threshold that random
              scores could miss (alpha 1e-30 would only be a likely cover).
  "baseline"  `baseline(q, k, v, c0) -> out` over contiguous K/V the session
              keeps: q [B, C, Hq, D], k / v [B, c0 + C, Hkv, D] (views),
              out [B, C, Hq, D]; it must use the scale 1/sqrt(D).
              `sdpa_baseline` (dense SDPA flash, causal bottom-right) is one.

The kernel library holds bf16 kernels (page 64, block 128, nhd) for 16/4
(s 1, 2, 4), 32/8 (s 1, 4) and 28/4 (s 1, 7) query/KV heads with D = 128, and
f16 ones for 32/8 with D = 64 (s 2, 4); another configuration raises
ValueError naming it.
"""

import inspect
import math
from dataclasses import dataclass

from .prefill import ChunkedPrefill
from .runtime import Runtime, _torch

NAME = "compact"
PAGE, BLOCK = 64, 128
METHODS = ("compact", "dense", "baseline")
_active = None  # the session whose prefill is running


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise RuntimeError("compact_attention.hf needs Hugging Face transformers "
                           "(pip install 'transformers>=4.51')") from e
    if not hasattr(transformers, "AttentionInterface"):
        raise RuntimeError("compact_attention.hf needs transformers >= 4.51 (AttentionInterface); "
                           f"found {transformers.__version__}")
    return transformers


def register(name=NAME):
    """Registers `attention_forward` with transformers' AttentionInterface
    under `name` (idempotent); returns the name."""
    _transformers().AttentionInterface.register(name, attention_forward)
    return name


def attention_forward(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0,
                      **kwargs):
    """The registered attention function (transformers' signature): returns
    (out [B, C, Hq, D], None). Runs only inside ChunkedPrefillSession.prefill."""
    if _active is None:
        raise RuntimeError("the CompactAttention attention function runs only inside "
                           "ChunkedPrefillSession.prefill (it needs the session's K/V cache)")
    if kwargs.get("sliding_window") is not None:
        raise NotImplementedError("CompactAttention: sliding-window attention is not supported")
    return _active._attend(module.layer_idx, query, key, value, scaling), None


def sdpa_baseline(q, k, v, c0):
    """Dense causal attention of a chunk at offset c0 over contiguous K/V:
    PyTorch's flash kernel, whose causal mask is bottom-right aligned when
    q is shorter than k (F.scaled_dot_product_attention(is_causal=True) would
    align it top-left: wrong for c0 > 0) and which takes GQA K/V as they are."""
    torch = _torch()
    out = torch.ops.aten._scaled_dot_product_flash_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), 0.0, True)[0]
    return out.transpose(1, 2)


def _attn_implementation(model):
    return model.config._attn_implementation


def _set_attn_implementation(model, name):
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        setter(name)  # recent transformers; it only warns when the class refuses
    if _attn_implementation(model) != name:
        model.config._attn_implementation = name  # what the AttentionInterface docs show
    if _attn_implementation(model) != name:
        raise RuntimeError(f"{type(model).__name__} did not switch its attention implementation "
                           f"to {name!r} (it may not use transformers' AttentionInterface)")


@dataclass
class PrefillOutput:
    logits: object                   # [B, C_last, V] ("chunk"), [B, 1, V] ("last") or None
    attention_ms: float = None       # with timing=True: the attention calls of every layer
    chunk_attention_ms: list = None  # the same, per chunk


class ChunkedPrefillSession:
    """Chunked prefill of `model` (a LlamaForCausalLM-like model on CUDA)
    through our plans: per layer a paged K/V cache (pages of 64 tokens, handed
    out shuffled), pooled keys and a ChunkedPrefill plan; one Runtime for all."""

    def __init__(self, model, max_batch, max_len, chunk_len, method="compact",
                 exec_group_size=None, per_query_block=False, alpha=0.06, sink=2, window=4,
                 baseline=None, name=NAME, runtime=None, seed=0, group_slack=0.0):
        torch = _torch()
        cfg = model.config
        if method not in METHODS:
            raise ValueError(f"argument 'method': expected one of {METHODS}, got {method!r}")
        if method == "baseline" and not callable(baseline):
            raise ValueError("argument 'baseline': method 'baseline' needs a callable "
                             "baseline(q, k, v, c0)")
        if min(max_batch, max_len, chunk_len) <= 0:
            raise ValueError("arguments 'max_batch', 'max_len' and 'chunk_len' must be positive")
        self.model, self.method, self.baseline, self.name = model, method, baseline, name
        self.max_batch, self.max_len, self.chunk_len = max_batch, max_len, chunk_len
        self.Hq = cfg.num_attention_heads
        self.Hkv = getattr(cfg, "num_key_value_heads", None) or self.Hq
        self.D = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.Hq
        self.num_layers = cfg.num_hidden_layers
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.scales = self._scales()
        self.batch = self.length = 0
        self._chunk = None
        self._events = None
        layers = range(self.num_layers)
        if method == "baseline":
            if any(not math.isclose(s, self.D ** -0.5, rel_tol=1e-6) for s in self.scales):
                raise ValueError("method 'baseline': the model's attention scaling is not "
                                 "1/sqrt(head_dim); baselines take no scale")
            shape = (max_batch, max_len, self.Hkv, self.D)
            self.k_all = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in layers]
            self.v_all = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in layers]
            return
        self.rt = runtime or Runtime(self.Hq, self.Hkv, self.D, PAGE, BLOCK, self.dtype, "nhd",
                                     device=self.device.index)
        rt = self.rt
        if (rt.q_heads, rt.kv_heads, rt.head_dim, rt.dtype) != (self.Hq, self.Hkv, self.D,
                                                                self.dtype):
            raise ValueError("argument 'runtime': its heads / head dim / dtype are not the model's")
        self.capacity = -(-max_len // rt.block_size)
        s = rt._group(exec_group_size)
        if method == "dense":
            s, per_query_block, sink, window = rt.group_size, False, self.capacity, 0
        if not rt.supports(s):
            dt = {torch.bfloat16: "bf16", torch.float16: "f16"}.get(self.dtype, str(self.dtype))
            raise ValueError(
                f"the kernel library has no kernels for q{self.Hq}_kv{self.Hkv}_d{self.D}_p"
                f"{rt.page_size}_b{rt.block_size}_{dt}_{rt.layout} with s = {s} (the model's "
                "attention heads / KV heads / head dim / dtype); add the configuration to "
                "defaultLibrary() in lib/Codegen/KernelLibrary.cpp and rebuild the library")
        self.s, self.per_query_block = s, bool(per_query_block)
        pages = -(-max_len // rt.page_size)
        perm = torch.randperm(max_batch * pages, generator=torch.Generator().manual_seed(seed))
        self.page_table = perm.to(torch.int32).reshape(max_batch, pages).to(self.device)
        cache = rt._cache_shape(max_batch * pages)
        pooled = (max_batch, self.Hkv, self.capacity, self.D)

        def alloc(shape, fill=torch.empty):
            return [fill(shape, dtype=self.dtype, device=self.device) for _ in layers]

        self.k_cache, self.v_cache, self.pooled = alloc(cache), alloc(cache), alloc(pooled,
                                                                                    torch.zeros)
        self.plans = [ChunkedPrefill(rt, max_batch, self.capacity, s, alpha, sink, window,
                                     scale=self.scales[i], per_query_block=per_query_block,
                                     max_chunk_len=chunk_len, group_slack=group_slack)
                      for i in layers]

    def _scales(self):
        """Each layer's softmax scale: its attention module's `scaling`
        attribute (HF attention modules have one), else 1/sqrt(D)."""
        found = {m.layer_idx: float(m.scaling) for m in self.model.modules()
                 if isinstance(getattr(m, "layer_idx", None), int) and hasattr(m, "scaling")}
        return [found.get(i, self.D ** -0.5) for i in range(self.num_layers)]

    # -- the attention call ----------------------------------------------------

    def _attend(self, layer, query, key, value, scaling):
        torch = _torch()
        c0, C, lens, index = self._chunk
        B = query.shape[0]
        if tuple(query.shape) != (self.batch, self.Hq, C, self.D) or key.shape[2] != C:
            raise RuntimeError(f"attention layer {layer}: expected q of shape "
                               f"{(self.batch, self.Hq, C, self.D)} and the chunk's {C} keys "
                               f"only, got q {tuple(query.shape)}, k {tuple(key.shape)} (was "
                               "the model called with a cache?)")
        if scaling is not None and not math.isclose(scaling, self.scales[layer], rel_tol=1e-6):
            raise ValueError(f"attention layer {layer}: scaling {scaling} differs from the "
                             f"plan's {self.scales[layer]}")
        if self._events is not None:
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
        q = query.transpose(1, 2).contiguous()  # [B, C, Hq, D]; a view when HF's q was one
        k = key.transpose(1, 2).contiguous()
        v = value.transpose(1, 2).contiguous()
        if self.method == "baseline":
            self.k_all[layer][:B, c0:c0 + C] = k
            self.v_all[layer][:B, c0:c0 + C] = v
            out = self.baseline(q, self.k_all[layer][:B, :c0 + C], self.v_all[layer][:B, :c0 + C],
                                c0)
        else:
            out = self.plans[layer](q, k, v, self.k_cache[layer], self.v_cache[layer],
                                    self.page_table[:B], lens, self.pooled[layer][:B],
                                    max_prefix_len=c0)
        if self._events is not None:
            end.record()
            self._events.append((index, start, end))
        return out

    # -- prefill -------------------------------------------------------------------

    def prefill(self, input_ids, logits="chunk", timing=False):
        """Runs the prompt `input_ids` [B, L] chunk by chunk; returns a
        PrefillOutput: logits of the last chunk ("chunk"), of the last token
        ("last") or none ("none"), and with timing=True the CUDA-event time
        of the attention calls (the chunk's K/V write included), summed."""
        global _active
        torch = _torch()
        if logits not in ("chunk", "last", "none"):
            raise ValueError("argument 'logits': expected 'chunk', 'last' or 'none', got "
                             f"{logits!r}")
        if input_ids.dim() != 2:
            raise ValueError(f"argument 'input_ids': expected [B, L], got {tuple(input_ids.shape)}")
        B, L = input_ids.shape
        if not (0 < B <= self.max_batch and 0 < L <= self.max_len):
            raise ValueError(f"argument 'input_ids': [B, L] = {[B, L]} exceeds the session's "
                             f"max_batch {self.max_batch} / max_len {self.max_len}")
        if _active is not None:
            raise RuntimeError("another ChunkedPrefillSession.prefill is running")
        register(self.name)
        base, head = self.model.base_model, self.model.get_output_embeddings()
        previous = _attn_implementation(self.model)
        self.batch, self.length = B, L
        self._events = [] if timing else None
        input_ids = input_ids.to(self.device)
        hidden = None
        _set_attn_implementation(self.model, self.name)
        _active = self
        try:
            with torch.no_grad():
                for index, c0 in enumerate(range(0, L, self.chunk_len)):
                    C = min(self.chunk_len, L - c0)
                    lens = torch.full((B,), c0 + C, dtype=torch.int32, device=self.device)
                    self._chunk = (c0, C, lens, index)
                    pos = torch.arange(c0, c0 + C, device=self.device).expand(B, C)
                    hidden = base(input_ids=input_ids[:, c0:c0 + C], position_ids=pos,
                                  use_cache=False).last_hidden_state
                out = PrefillOutput(None if logits == "none" else
                                    head(hidden if logits == "chunk" else hidden[:, -1:]))
        finally:
            _active = None
            self._chunk = None
            _set_attn_implementation(self.model, previous)
        if timing:
            torch.cuda.synchronize(self.device)
            per_chunk = [0.0] * (index + 1)
            for i, start, end in self._events:
                per_chunk[i] += start.elapsed_time(end)
            out.attention_ms, out.chunk_attention_ms = sum(per_chunk), per_chunk
            self._events = None
        return out

    # -- after a prefill -------------------------------------------------------

    def density(self):
        """The last chunk's block tables: mean selected blocks per table over
        the KV blocks of the context, averaged over layers (None for baselines)."""
        if self.method == "baseline" or not self.length:
            return None
        Kb = -(-self.length // BLOCK)
        return sum(float(p.tables(self.batch)[1].double().mean()) for p in self.plans) / (
            Kb * self.num_layers)

    def kv(self, layer):
        """Layer `layer`'s K and V of the last prefill, gathered from the
        cache into contiguous [B, Hkv, L, D] tensors (copies)."""
        B, L = self.batch, self.length
        if self.method == "baseline":
            k, v = self.k_all[layer][:B, :L], self.v_all[layer][:B, :L]
        else:
            n = -(-L // self.rt.page_size)
            pages = self.page_table[:B, :n].long()
            k, v = (c[layer][pages].reshape(B, n * self.rt.page_size, self.Hkv, self.D)[:, :L]
                    for c in (self.k_cache, self.v_cache))
        return k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()

    def dynamic_cache(self):
        """The last prefill's K/V as a transformers DynamicCache, for decoding
        with HF's own attention (model(..., past_key_values=cache))."""
        from transformers import DynamicCache
        try:
            cache = DynamicCache(config=self.model.config)
        except TypeError:  # transformers before the config argument
            cache = DynamicCache()
        for i in range(self.num_layers):
            cache.update(*self.kv(i), i)
        return cache


def random_llama(layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, max_positions,
                 rope_theta=500000.0, seed=0, dtype=None, device="cuda"):
    """A LlamaForCausalLM with random (seeded) weights in `dtype` (bf16) on
    `device`, attention "sdpa": for tests and benchmarks."""
    torch = _torch()
    _transformers()
    from transformers import LlamaConfig, LlamaForCausalLM
    kw = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
              num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
              head_dim=head_dim, max_position_embeddings=max_positions, tie_word_embeddings=False)
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:  # transformers 5
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": rope_theta}
    else:
        kw["rope_theta"] = rope_theta
    dtype = dtype or torch.bfloat16
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters made in dtype; RoPE's inv_freq stays fp32
    try:
        with torch.device(device):
            model = LlamaForCausalLM(LlamaConfig(**kw))
    finally:
        torch.set_default_dtype(default)
    if next(model.parameters()).dtype != dtype:
        model.to(dtype)
    _set_attn_implementation(model, "sdpa")
    return model.eval()
