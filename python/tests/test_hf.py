"""Hugging Face transformers integration (compact_attention.hf) on the GPU: a
tiny random LLaMA (2 layers, 16 query / 4 KV heads of 128, hidden 2048) runs
chunked prefill through our kernels; dense must match the model's own
unchunked forward, and the prompt's K/V must decode with HF's attention."""

import copy

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "AttentionInterface"):
    pytest.skip("needs transformers >= 4.51 (AttentionInterface)", allow_module_level=True)

from compact_attention import hf  # noqa: E402

B, L, CHUNK, VOCAB, TOL = 2, 2048, 512, 4096, 1e-2
_model = {}


def model():
    if not _model:
        _model["m"] = hf.random_llama(2, 2048, 16, 4, 128, 4096, VOCAB, L, seed=3)
    return _model["m"]


def prompt():
    g = torch.Generator(device="cuda").manual_seed(5)
    return torch.randint(0, VOCAB, (B, L), generator=g, device="cuda")


def unchunked_logits(m, ids, keep):
    with torch.no_grad():
        hidden = m.base_model(input_ids=ids, use_cache=False).last_hidden_state
        return m.get_output_embeddings()(hidden[:, -keep:]).float()


def rel(a, b):
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm())


def fp32_model():
    if "fp32" not in _model:
        _model["fp32"] = copy.deepcopy(model()).float()
    return _model["fp32"]


@pytest.mark.parametrize("kw", [dict(method="dense"),
                                dict(method="baseline", baseline=hf.sdpa_baseline)],
                         ids=["dense", "sdpa_baseline"])
def test_dense_matches_the_model_within_bf16_noise(kw):
    """Against the fp32 model's unchunked forward, chunked prefill through
    the session is as close as the bf16 model's own unchunked forward (the
    bf16 noise floor), or within TOL."""
    m, ids = model(), prompt()
    ref = unchunked_logits(fp32_model(), ids, CHUNK)
    floor = rel(unchunked_logits(m, ids, CHUNK), ref)
    out = hf.ChunkedPrefillSession(m, B, L, CHUNK, **kw).prefill(ids, timing=True)
    assert out.logits.shape == (B, CHUNK, VOCAB)
    assert rel(out.logits, ref) <= max(TOL, 1.25 * floor), f"bf16 floor {floor:.3e}"
    assert len(out.chunk_attention_ms) == L // CHUNK and out.attention_ms > 0
    assert m.config._attn_implementation == "sdpa"  # restored


@pytest.mark.parametrize("s,per_qb", [(4, False), (1, True)])
def test_compact_runs(s, per_qb):
    m, ids = model(), prompt()
    session = hf.ChunkedPrefillSession(m, B, L, CHUNK, exec_group_size=s, per_query_block=per_qb)
    logits = session.prefill(ids).logits
    assert logits.shape == (B, CHUNK, VOCAB) and bool(torch.isfinite(logits).all())
    assert 0 < session.density() <= 1


def test_prompt_cache_decodes_with_hf_attention():
    """Prefill L - 1 tokens densely, hand the K/V to a DynamicCache, decode
    the last token with HF's sdpa: its logits are the unchunked forward's."""
    m, ids = model(), prompt()
    ref = unchunked_logits(m, ids, 1)
    session = hf.ChunkedPrefillSession(m, B, L, CHUNK, method="dense")
    session.prefill(ids[:, :-1], logits="none")
    pos = torch.full((B, 1), L - 1, device="cuda")
    with torch.no_grad():
        out = m(input_ids=ids[:, -1:], past_key_values=session.dynamic_cache(), position_ids=pos,
                use_cache=True).logits
    assert rel(out[:, -1:], ref) <= TOL


def test_missing_kernel_configuration_is_named():
    m = hf.random_llama(1, 1024, 8, 8, 128, 1024, 256, 1024, seed=1)
    with pytest.raises(ValueError, match="q8_kv8_d128"):
        hf.ChunkedPrefillSession(m, 1, 1024, 256)


def test_attention_function_outside_a_prefill_is_refused():
    m, ids = model(), prompt()
    hf.register()
    hf._set_attn_implementation(m, hf.NAME)
    try:
        with pytest.raises(RuntimeError, match="ChunkedPrefillSession.prefill"):
            with torch.no_grad():
                m(input_ids=ids[:, :16], use_cache=False)
    finally:
        hf._set_attn_implementation(m, "sdpa")
