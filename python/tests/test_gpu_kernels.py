"""The generated kernels on the GPU against the C++ reference and an fp64
torch reference. Fresh random inputs per case, outputs poisoned first."""

import math

import pytest
import torch

import reference
from cases import LIBRARY, make_case, reference_attention, rel_err
from compact_attention import ChunkedPrefill, CompactError, Runtime
from compact_attention.prefill import chunked_prefill_attention, register

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")

CONFIGS = LIBRARY
_runtimes = {}


def runtime(cfg, path="wgmma", **options):
    """The runtime of a library configuration, one per path and options
    (kv_splits, clusters), kept across tests."""
    Hq, Hkv, D, PS, bs, dtype, layout, _ = cfg
    key = cfg[:7] + (path,) + tuple(sorted(options.items()))
    if key not in _runtimes:
        _runtimes[key] = Runtime(Hq, Hkv, D, PS, bs, "bfloat16" if dtype == "bf16" else "float16",
                                 layout, matrix_path=path, **options)
    return _runtimes[key]


def random_lens(gen, B, C, max_prefix):
    return [C + int(torch.randint(0, max_prefix + 1, (1,), generator=gen)) for _ in range(B)]


def case_for(cfg, gen, B, C, max_prefix):
    Hq, Hkv, D, PS, bs, dtype, layout, _ = cfg
    return make_case(gen, B, C, random_lens(gen, B, C, max_prefix), Hq, Hkv, D, PS, bs, dtype,
                     layout)


def pooled_of(rt, case):
    """GPU pooled keys of every block (one 'chunk' spanning each prompt)."""
    B = case["B"]
    pooled = torch.zeros((B, case["Hkv"], case["Kb"], case["D"]), dtype=rt.dtype, device="cuda")
    # Pool sequence by sequence, each as one chunk of its whole length.
    for b in range(B):
        L = int(case["lens"][b])
        lens = case["lens"][b:b + 1].contiguous()
        rt.pool_keys(case["k_cache"], case["page_table"][b:b + 1].contiguous(), lens,
                     pooled[b:b + 1], chunk_len=L)
    return pooled


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"q{c[0]}kv{c[1]}d{c[2]}p{c[3]}b{c[4]}{c[5]}{c[6]}")
def test_append_writes_only_the_chunk(cfg):
    gen = torch.Generator().manual_seed(1)
    rt = runtime(cfg)
    for B, C in [(1, 77), (3, 256), (2, 1000)]:
        case = case_for(cfg, gen, B, C, 500)
        k0, v0 = case["k_cache"].clone(), case["v_cache"].clone()
        dt = rt.dtype
        k_new = torch.randn((B, C, case["Hkv"], case["D"]), device="cuda").to(dt)
        v_new = torch.randn_like(k_new)
        rt.append_kv(k_new, v_new, case["k_cache"], case["v_cache"], case["page_table"], case["lens"])
        torch.cuda.synchronize()
        # Expected: the chunk's slots take the new rows, nothing else changes.
        ek, ev = k0.clone(), v0.clone()
        PS = case["PS"]
        for b in range(B):
            L = int(case["lens"][b])
            for t in range(C):
                pos = L - C + t
                page, slot = int(case["page_table"][b, pos // PS]), pos % PS
                if case["layout"] == "nhd":
                    ek[page, slot], ev[page, slot] = k_new[b, t], v_new[b, t]
                else:
                    ek[page, :, slot], ev[page, :, slot] = k_new[b, t], v_new[b, t]
        assert torch.equal(case["k_cache"], ek) and torch.equal(case["v_cache"], ev)


@pytest.mark.parametrize("cfg", CONFIGS[:3], ids=lambda c: f"q{c[0]}d{c[2]}p{c[3]}{c[5]}{c[6]}")
def test_pool_keys_matches_reference(cfg):
    gen = torch.Generator().manual_seed(2)
    rt = runtime(cfg)
    case = case_for(cfg, gen, 3, 300, 900)
    sentinel = 7.0
    pooled = torch.full((3, case["Hkv"], case["Kb"], case["D"]), sentinel, dtype=rt.dtype,
                        device="cuda")
    rt.pool_keys(case["k_cache"], case["page_table"], case["lens"], pooled, chunk_len=case["C"])
    expected = reference.pool_keys(case, case["k_cache"], torch.full(pooled.shape, sentinel))
    got = pooled.float().cpu()
    # Untouched blocks keep the sentinel; pooled blocks are within bf16 rounding.
    assert torch.equal(got == sentinel, expected == sentinel)
    assert torch.allclose(got, expected, atol=2e-2, rtol=1e-2)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"q{c[0]}kv{c[1]}d{c[2]}b{c[4]}{c[5]}{c[6]}")
def test_tables_are_the_reference_tables(cfg):
    """GPU scores against the reference scores (within rounding), then the
    reference thresholds and unions of the GPU's own scores must give the
    same tables as the GPU, unfused, fused, and from external scores."""
    gen = torch.Generator().manual_seed(3)
    rt = runtime(cfg)
    Hq = cfg[0]
    shapes = [(1, 1024, 4000), (2, 333, 1500), (5, 128, 9000), (8, 1024, 3 * 1024),
              (1, 64, 131072), (2, 1024, 140000)]
    for (B, C, max_prefix), alpha in zip(shapes, [0.06, 0.3, 0.01, 0.06, 0.06, 0.002]):
        case = case_for(cfg, gen, B, C, max_prefix)
        pooled = pooled_of(rt, case)
        qb = -(-C // case["bs"])
        scores = torch.full((B, Hq, qb, case["Kb"]), math.nan, device="cuda")
        rt.block_scores(case["q"], pooled, case["lens"], scores)
        torch.cuda.synchronize()
        if B * C * case["Kb"] <= 8 * 1024 * 256:
            ref_scores = reference.block_scores(case, case["q"], pooled, 1 / math.sqrt(case["D"]))
            got = scores.cpu()
            assert torch.equal(torch.isinf(got), torch.isinf(ref_scores)), "-inf pattern"
            finite = torch.isfinite(ref_scores)
            assert torch.allclose(got[finite], ref_scores[finite], atol=5e-2, rtol=1e-2)
        sink, window = 2, 4
        mask = torch.full(scores.shape, 99, dtype=torch.int8, device="cuda")
        rt.select_blocks(scores, case["lens"], C, mask, alpha, sink, window)
        ref_mask = reference.select_blocks(case, scores, alpha, sink, window)
        assert torch.equal(mask.cpu().to(torch.uint8), ref_mask), "select_blocks"
        for s, per_qb in [(s, p) for s in cfg[7] for p in (False, True)]:
            # One table per group, or one per group and query block.
            E = Hq // s * (qb if per_qb else 1)
            ref_table, ref_counts = reference.block_union(case, ref_mask, s, per_qb)
            outputs = {}
            for kind in ("unfused", "fused", "external"):
                table = torch.full((B, E, case["Kb"]), 12345, dtype=torch.int32, device="cuda")
                counts = torch.full((B, E), 12345, dtype=torch.int32, device="cuda")
                if kind == "unfused":
                    rt.block_union(mask, case["lens"], C, table, counts, s)
                elif kind == "fused":
                    rt.score_select_union(case["q"], pooled, case["lens"], table, counts, alpha,
                                          sink, window, s)
                else:
                    rt.select_union(scores, case["lens"], C, table, counts, alpha, sink, window, s)
                outputs[kind] = (table.cpu(), counts.cpu())
            for kind, (table, counts) in outputs.items():
                assert torch.equal(counts, ref_counts), f"{kind} counts, s={s} per_qb={per_qb}"
                assert torch.equal(table, ref_table), f"{kind} table, s={s} per_qb={per_qb}"


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"q{c[0]}kv{c[1]}d{c[2]}p{c[3]}b{c[4]}{c[5]}{c[6]}")
def test_choose_exec_groups_matches_reference(cfg):
    """The cost model on per-head tables from the fused selection (heads of a
    group overlap through sink, window and the planted blocks) and on random
    tables with shared rows and bad entries, for several slacks."""
    gen = torch.Generator().manual_seed(9)
    rt = runtime(cfg)
    Hq, G = cfg[0], cfg[0] // cfg[1]
    for B, C, per_qb in [(2, 300, True), (3, 1000, False), (1, 2048, True)]:
        case = case_for(cfg, gen, B, C, 6000)
        pooled = pooled_of(rt, case)
        T = -(-C // case["bs"]) if per_qb else 1
        random_table = torch.full((B, Hq * T, case["Kb"]), -1, dtype=torch.int32, device="cuda")
        random_counts = torch.zeros((B, Hq * T), dtype=torch.int32, device="cuda")
        sources = [(random_table, random_counts)]
        if 1 in cfg[7]:  # the library has per-head selection for this config
            selected, selected_counts = torch.full_like(random_table, 12345), \
                torch.full_like(random_counts, 12345)
            rt.score_select_union(case["q"], pooled, case["lens"], selected, selected_counts,
                                  0.06, 2, 4, 1)
            sources.append((selected, selected_counts))
        for b in range(B):
            for r in range(Hq * T):
                if r // T % G and int(torch.randint(0, 3, (1,), generator=gen)) == 0:
                    first = (r // T - r // T % G) * T + r % T
                    random_table[b, r], random_counts[b, r] = random_table[b, first], \
                        random_counts[b, first]
                    continue
                keep = torch.rand(case["Kb"], generator=gen) < float(torch.rand(1, generator=gen))
                blocks = torch.nonzero(keep).flatten().to(torch.int32)
                random_table[b, r, :len(blocks)] = blocks.cuda()
                random_counts[b, r] = len(blocks)
        random_table[0, 0, 0] = -7  # ignored entries and a clamped count
        random_counts[-1, -1] = case["Kb"] + 5
        for table0, counts0 in sources:
            for slack in (0.0, 0.3, 1.0, 3.0):
                table, counts = table0.clone(), counts0.clone()
                rt.choose_exec_groups(table, counts, C, slack)
                ref_table, ref_counts = reference.choose_exec_groups(case, table0, counts0, slack)
                assert torch.equal(counts.cpu(), ref_counts), f"counts, slack {slack}"
                assert torch.equal(table.cpu(), ref_table), f"table, slack {slack}"


def test_empty_and_full_masks():
    gen = torch.Generator().manual_seed(4)
    cfg = CONFIGS[0]
    rt = runtime(cfg)
    case = case_for(cfg, gen, 4, 500, 5000)
    B, Hq, C = case["B"], case["Hq"], case["C"]
    qb = -(-C // case["bs"])
    for fill in (0, 1):
        mask = torch.full((B, Hq, qb, case["Kb"]), fill, dtype=torch.int8, device="cuda")
        for s in cfg[7]:
            table = torch.empty((B, Hq // s, case["Kb"]), dtype=torch.int32, device="cuda")
            counts = torch.empty((B, Hq // s), dtype=torch.int32, device="cuda")
            rt.block_union(mask, case["lens"], C, table, counts, s)
            ref_table, ref_counts = reference.block_union(case, mask.cpu().to(torch.uint8), s)
            assert torch.equal(table.cpu(), ref_table) and torch.equal(counts.cpu(), ref_counts)
            if fill == 1:
                dense, dense_counts = reference.dense_table(case, s)
                assert torch.equal(table.cpu(), dense)
                rt.dense_table(case["lens"], table, counts, s)
                assert torch.equal(table.cpu(), dense) and torch.equal(counts.cpu(), dense_counts)


def random_tables(gen, case, s, keep, rows_per_group=1):
    B, E, Kb = case["B"], case["Hq"] // s * rows_per_group, case["Kb"]
    table = torch.full((B, E, Kb), -1, dtype=torch.int32)
    counts = torch.zeros((B, E), dtype=torch.int32)
    for b in range(B):
        nb = -(-int(case["lens"][b]) // case["bs"])
        for e in range(E):
            chosen = torch.nonzero(torch.rand(nb, generator=gen) < keep).flatten()
            table[b, e, : len(chosen)] = chosen.to(torch.int32)
            counts[b, e] = len(chosen)
    return table.cuda(), counts.cuda()


ATTENTION_SHAPES = [(1, 1024, 3000), (3, 200, 1200), (2, 1, 700), (8, 512, 2048), (1, 77, 0)]


@pytest.mark.parametrize("path", ["wgmma", "mma_sync"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"q{c[0]}kv{c[1]}d{c[2]}p{c[3]}b{c[4]}{c[5]}{c[6]}")
def test_attention_matches_fp64(cfg, path):
    gen = torch.Generator().manual_seed(5)
    rt = runtime(cfg, path)
    tol = 1e-2
    for (B, C, max_prefix), keep in zip(ATTENTION_SHAPES, [1.0, 0.3, 0.5, 0.2, 1.0]):
        case = case_for(cfg, gen, B, C, max_prefix)
        for s in cfg[7]:
            # One table per group, or (where a row tile lies in one query
            # block) one per group and query block.
            per_qb = (case["bs"] * s) % 128 == 0 and bool(torch.randint(0, 2, (1,), generator=gen))
            T = -(-C // case["bs"]) if per_qb else 1
            table, counts = random_tables(gen, case, s, keep, T)
            out = torch.full_like(case["q"], math.nan)
            lse = torch.full((B, case["Hq"], C), math.nan, device="cuda")
            rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                               case["lens"], table, counts, out, lse, s)
            ref_out, ref_lse = reference_attention(case, table, counts, s)
            assert not torch.isnan(out).any(), "unwritten or NaN output"
            err = rel_err(out, ref_out)
            assert err <= tol, f"B={B} C={C} s={s} T={T}: relative error {err:.3e}"
            finite = torch.isfinite(ref_lse)
            assert torch.equal(torch.isfinite(lse), finite)
            assert torch.allclose(lse[finite].double(), ref_lse[finite], atol=2e-2, rtol=2e-3)


@pytest.mark.parametrize("path", ["wgmma", "mma_sync"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"q{c[0]}kv{c[1]}d{c[2]}p{c[3]}b{c[4]}{c[5]}{c[6]}")
def test_softmax_whose_maxima_grow_along_the_walk(cfg, path):
    """After the first tile the kernels exponentiate against the running m and
    redo a warp's row exactly where a thread's sum would exceed 2^8. Keys
    scaled up page by page make the maxima grow all along the walk (both
    steps mix), and a spike page late in each sequence makes p overflow to
    inf against the old m: the result is fp64's either way, unsplit (the
    whole walk in one block, cluster pairs where they apply) and split."""
    gen = torch.Generator().manual_seed(23)
    Hq, Hkv, D, PS, bs, dtype, layout, groups = cfg
    runtimes = [runtime(cfg, path)]
    if path == "wgmma":
        runtimes.append(runtime(cfg, path, kv_splits=1))
    for (B, C, max_prefix), spike in [((2, 256, 3000), False), ((2, 128, 2500), True)]:
        case = case_for(cfg, gen, B, C, max_prefix)
        k = case["k_cache"]
        for b in range(B):
            n = -(-int(case["lens"][b]) // PS)
            pages = case["page_table"][b, :n].long()
            ramp = 0.5 + 2.5 * (torch.arange(n, device="cuda", dtype=torch.float32) / n) ** 2
            if spike:
                ramp[(3 * n) // 4] = 40.0
            shape = (n, 1, 1, 1)
            k[pages] = (k[pages].float() * ramp.reshape(shape)).to(k.dtype)
        for s in groups:
            table, counts = random_tables(gen, case, s, 1.0)
            ref_out, ref_lse = reference_attention(case, table, counts, s)
            finite = torch.isfinite(ref_lse)
            for split, rt in zip(("auto", "unsplit"), runtimes):
                out = torch.full_like(case["q"], math.nan)
                lse = torch.full((B, Hq, C), math.nan, device="cuda")
                rt.paged_attention(case["q"], k, case["v_cache"], case["page_table"],
                                   case["lens"], table, counts, out, lse, s)
                where = f"B={B} C={C} s={s} spike={spike} splits={split}"
                assert not torch.isnan(out).any(), f"{where}: unwritten or NaN output"
                err = rel_err(out, ref_out)
                assert err <= 1e-2, f"{where}: relative error {err:.3e}"
                assert torch.equal(torch.isfinite(lse), finite), where
                assert torch.allclose(lse[finite].double(), ref_lse[finite], atol=2e-2,
                                      rtol=2e-3), where


@pytest.mark.parametrize("splits", [2, 3, 16])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"q{c[0]}kv{c[1]}d{c[2]}p{c[3]}b{c[4]}{c[5]}{c[6]}")
def test_split_kv_matches_fp64_and_repeats_bit_identically(cfg, splits):
    """Split walks merged by the combine kernel: within 1e-2 of fp64, the
    lse too, close to the whole walk, and bit-identical run to run; splits
    beyond a row's blocks are empty."""
    gen = torch.Generator().manual_seed(40 + splits)
    Hq, Hkv, D, PS, bs, dtype, layout, groups = cfg
    rt = runtime(cfg, kv_splits=splits)
    whole = runtime(cfg, kv_splits=1)
    for (B, C, max_prefix), keep in [((1, 512, 6000), 0.4), ((2, 77, 300), 1.0),
                                     ((1, 1, 40), 1.0)]:
        case = case_for(cfg, gen, B, C, max_prefix)
        for s in groups:
            per_qb = (bs * s) % 128 == 0 and bool(torch.randint(0, 2, (1,), generator=gen))
            table, counts = random_tables(gen, case, s, keep, -(-C // bs) if per_qb else 1)
            args = (case["q"], case["k_cache"], case["v_cache"], case["page_table"], case["lens"],
                    table, counts)
            outs = []
            for r in (rt, rt, whole):
                out = torch.full_like(case["q"], math.nan)
                lse = torch.full((B, Hq, C), math.nan, device="cuda")
                r.paged_attention(*args, out, lse, s)
                outs.append((out, lse))
            ref_out, ref_lse = reference_attention(case, table, counts, s)
            (out, lse), (again, lse_again), (whole_out, _) = outs
            assert not torch.isnan(out).any(), "unwritten or NaN output"
            err = rel_err(out, ref_out)
            assert err <= 1e-2, f"B={B} C={C} s={s} splits={splits}: relative error {err:.3e}"
            assert rel_err(out, whole_out.double()) <= 1e-2
            finite = torch.isfinite(ref_lse)
            assert torch.equal(torch.isfinite(lse), finite)
            assert torch.allclose(lse[finite].double(), ref_lse[finite], atol=2e-2, rtol=2e-3)
            assert torch.equal(out, again) and torch.equal(lse, lse_again)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"q{c[0]}kv{c[1]}d{c[2]}p{c[3]}b{c[4]}{c[5]}{c[6]}")
def test_cluster_pairs_give_the_plain_blocks_bits(cfg):
    """Row tiles walked as cluster pairs (each K / V box multicast to both
    blocks) give the same bits as plain blocks, within 1e-2 of fp64: with one
    table row per group, per query block where a pair shares a row, and
    forced clusters whose pairs read different rows (they walk alone)."""
    gen = torch.Generator().manual_seed(71)
    Hq, Hkv, D, PS, bs, dtype, layout, groups = cfg
    runtimes = {mode: runtime(cfg, kv_splits=1, clusters=mode)
                for mode in ("never", "auto", "always")}
    for (B, C, max_prefix), keep in [((2, 1024, 3000), 1.0), ((3, 256, 1500), 0.4),
                                     ((1, 300, 700), 0.7)]:
        case = case_for(cfg, gen, B, C, max_prefix)
        for s in groups:
            for per_qb in ([False, True] if (bs * s) % 128 == 0 else [False]):
                table, counts = random_tables(gen, case, s, keep, -(-C // bs) if per_qb else 1)
                outs = {}
                for mode, rt in runtimes.items():
                    out = torch.full_like(case["q"], math.nan)
                    lse = torch.full((B, Hq, C), math.nan, device="cuda")
                    rt.paged_attention(case["q"], case["k_cache"], case["v_cache"],
                                       case["page_table"], case["lens"], table, counts, out, lse,
                                       s)
                    outs[mode] = (out, lse)
                ref_out, _ = reference_attention(case, table, counts, s)
                where = f"B={B} C={C} s={s} per_qb={per_qb}"
                out, lse = outs["never"]
                assert not torch.isnan(out).any(), "unwritten or NaN output"
                assert rel_err(out, ref_out) <= 1e-2, where
                for mode in ("auto", "always"):
                    assert torch.equal(outs[mode][0], out), f"{where}: {mode} differs"
                    assert torch.equal(outs[mode][1], lse), f"{where}: {mode} lse differs"


def test_cluster_mode_is_checked():
    cfg = CONFIGS[0]
    with pytest.raises(ValueError, match="argument 'clusters'"):
        runtime(cfg).set_clusters("sometimes")


@pytest.mark.parametrize("path", ["wgmma", "mma_sync"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"q{c[0]}kv{c[1]}d{c[2]}p{c[3]}b{c[4]}{c[5]}{c[6]}")
def test_stale_cache_slots_are_never_read(cfg, path):
    """The slots of each sequence's last page past its length, and the spare
    pages, hold NaN: the keys past the context are never read (wgmma: TMA
    boxes from outside the page, which read as zeros; mma_sync: zero-filling
    cp.async), so no stale slot reaches the output."""
    gen = torch.Generator().manual_seed(9)
    rt = runtime(cfg, path)
    Hq, Hkv, D, PS, bs, dtype, layout, groups = cfg
    case = case_for(cfg, gen, 3, 150, 2000)
    used = torch.zeros(case["num_pages"], dtype=torch.bool)
    for b in range(3):
        L = int(case["lens"][b])
        n = -(-L // PS)
        pages = case["page_table"][b, :n].long().cpu()
        used[pages] = True
        for cache in (case["k_cache"], case["v_cache"]):
            tail = cache[pages[-1], L - (n - 1) * PS:] if layout == "nhd" else \
                cache[pages[-1], :, L - (n - 1) * PS:]
            tail.fill_(math.nan)
    for cache in (case["k_cache"], case["v_cache"]):
        cache[~used.cuda()] = math.nan
    s = groups[0]
    table = torch.zeros((3, Hq // s, case["Kb"]), dtype=torch.int32, device="cuda")
    counts = torch.zeros((3, Hq // s), dtype=torch.int32, device="cuda")
    rt.dense_table(case["lens"], table, counts, s, case["C"])
    out = torch.full_like(case["q"], math.nan)
    rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                       case["lens"], table, counts, out, None, s)
    assert not torch.isnan(out).any(), "a stale slot reached the output"
    ref_out, _ = reference_attention(case, table, counts, s)
    assert rel_err(out, ref_out) <= 1e-2


@pytest.mark.parametrize("path", ["wgmma", "mma_sync"])
def test_rows_without_keys_are_zero(path):
    gen = torch.Generator().manual_seed(6)
    cfg = CONFIGS[0]
    rt = runtime(cfg, path)
    case = case_for(cfg, gen, 2, 300, 1000)
    table = torch.full((2, 4, case["Kb"]), -1, dtype=torch.int32, device="cuda")
    counts = torch.zeros((2, 4), dtype=torch.int32, device="cuda")
    out = torch.full_like(case["q"], math.nan)
    lse = torch.zeros((2, 16, 300), device="cuda")
    rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                       case["lens"], table, counts, out, lse, 4)
    assert torch.count_nonzero(out) == 0
    assert torch.isneginf(lse).all()


@pytest.mark.parametrize("path", ["wgmma", "mma_sync"])
def test_bit_identical_repeats_and_graph_replay(path):
    gen = torch.Generator().manual_seed(7)
    cfg = CONFIGS[0]
    rt = runtime(cfg, path)
    case = case_for(cfg, gen, 4, 1024, 8000)
    pooled = pooled_of(rt, case)
    E = 4
    table = torch.empty((4, E, case["Kb"]), dtype=torch.int32, device="cuda")
    counts = torch.empty((4, E), dtype=torch.int32, device="cuda")
    out = torch.empty_like(case["q"])

    def step():
        rt.score_select_union(case["q"], pooled, case["lens"], table, counts, 0.06, 2, 4, 4)
        rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                           case["lens"], table, counts, out, None, 4)

    step()
    torch.cuda.synchronize()
    first = (table.clone(), counts.clone(), out.clone())
    step()
    torch.cuda.synchronize()
    assert torch.equal(first[0], table) and torch.equal(first[2], out)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()  # warm up on the capture stream
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            step()
    out.fill_(math.nan)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(first[0], table) and torch.equal(first[1], counts)
    assert torch.equal(first[2], out)


def test_bad_arguments_are_named():
    cfg = CONFIGS[0]
    rt = runtime(cfg)
    gen = torch.Generator().manual_seed(8)
    case = case_for(cfg, gen, 2, 128, 100)
    table = torch.zeros((2, 4, case["Kb"]), dtype=torch.int32, device="cuda")
    counts = torch.zeros((2, 4), dtype=torch.int32, device="cuda")
    out = torch.zeros_like(case["q"])
    with pytest.raises(ValueError, match="argument 'q': expected dtype torch.bfloat16"):
        rt.paged_attention(case["q"].float(), case["k_cache"], case["v_cache"], case["page_table"],
                           case["lens"], table, counts, out)
    with pytest.raises(ValueError, match="argument 'exec_group_size' \\(3\\)"):
        rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                           case["lens"], table, counts, out, exec_group_size=3)
    with pytest.raises(ValueError, match="argument 'out': must be contiguous"):
        rt.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["page_table"],
                           case["lens"], table, counts, out.transpose(1, 2).contiguous().transpose(1, 2))
    bad_pages = case["page_table"].clone()
    bad_pages[1, 0] = bad_pages[0, 0]
    with pytest.raises(CompactError, match="page tables alias"):
        rt.check_metadata(bad_pages, case["lens"], 128, case["num_pages"], case["Kb"])


def _prefill_setup(gen, cfg, B, L, C):
    """A prompt of L tokens per sequence in a paged cache (pages shuffled),
    its chunks' K/V and queries."""
    Hq, Hkv, D, PS, bs, dtype, layout, _ = cfg
    case = make_case(gen, B, C, [L] * B, Hq, Hkv, D, PS, bs, dtype, layout)
    dt = case["q"].dtype
    q = torch.randn((B, L, Hq, D), generator=gen).to(dt).cuda()
    k = torch.randn((B, L, Hkv, D), generator=gen).to(dt).cuda()
    v = torch.randn((B, L, Hkv, D), generator=gen).to(dt).cuda()
    # Queries lean towards one direction that block 5's keys share: its
    # score stands out, so selection drops most other prefix blocks.
    direction = torch.randn(D, generator=gen)
    direction = (direction / direction.norm()).to(dt).cuda()
    q += 4 * direction
    k[:, 5 * bs:6 * bs] += 10 * direction
    return case, q, k, v


@pytest.mark.parametrize("s,per_qb,slack", [(4, False, 0), (1, False, 0), (1, True, 0),
                                            (4, True, 0), (1, True, 1.0), (1, False, 3.0)])
def test_chunked_prefill_plan(s, per_qb, slack):
    """The plan chunk by chunk: every chunk's output is attention over the
    plan's own tables (fp64 reference), the tables hold the chunk blocks each
    row's queries see (from its first query's block), dense chunks hold every
    block; with a group slack the device chooses the execution groups."""
    gen = torch.Generator().manual_seed(9)
    cfg = CONFIGS[0]
    rt = runtime(cfg)
    B, L, C = 2, 3000, 512
    case, q, k, v = _prefill_setup(gen, cfg, B, L, C)
    bs = case["bs"]
    pooled = torch.zeros((B, case["Hkv"], case["Kb"], case["D"]), dtype=rt.dtype, device="cuda")
    plan = ChunkedPrefill(rt, B, case["Kb"], exec_group_size=s, alpha=0.06, sink=1, window=2,
                          per_query_block=per_qb, max_chunk_len=C, group_slack=slack)
    selected_somewhere = False
    for c0 in range(0, L, C):
        c = min(C, L - c0)
        lens = torch.full((B,), c0 + c, dtype=torch.int32, device="cuda")
        out = plan(q[:, c0:c0 + c].contiguous(), k[:, c0:c0 + c].contiguous(),
                   v[:, c0:c0 + c].contiguous(), case["k_cache"], case["v_cache"],
                   case["page_table"], lens, pooled, max_prefix_len=c0)
        torch.cuda.synchronize()
        table, counts = (t.clone() for t in plan.tables())
        T = -(-c // bs) if per_qb else 1
        assert table.shape == (B, case["Hq"] // s * T, case["Kb"])
        step = dict(case, C=c, lens=lens, q=q[:, c0:c0 + c].contiguous())
        ref_out, _ = reference_attention(step, table, counts, s)
        err = rel_err(out, ref_out)
        assert err <= 1e-2, f"chunk at {c0}: relative error {err:.3e}"
        nb = -(-(c0 + c) // bs)
        selected_somewhere |= bool((counts < nb).any())
        for r in range(table.shape[1]):
            qb_begin, qb_end = (r % T, r % T + 1) if per_qb else (0, -(-c // bs))
            first, last = (c0 + qb_begin * bs) // bs, (c0 + min(qb_end * bs, c) - 1) // bs
            rows = table[:, r].cpu()
            for b in range(B):
                have = set(rows[b, : int(counts[b, r])].tolist())
                assert set(range(first, last + 1)) <= have, f"chunk blocks, row {r}"
    assert selected_somewhere, "selection never dropped a block"


def test_prefill_custom_op_compiles_and_captures():
    """The torch.library op inside torch.compile and a CUDA graph gives the
    plan's own output."""
    gen = torch.Generator().manual_seed(10)
    cfg = CONFIGS[0]
    rt = runtime(cfg)
    B, L, C = 2, 2048, 1024
    case, q, k, v = _prefill_setup(gen, cfg, B, L, C)
    pooled = torch.zeros((B, case["Hkv"], case["Kb"], case["D"]), dtype=rt.dtype, device="cuda")
    plan = ChunkedPrefill(rt, B, case["Kb"], exec_group_size=1, per_query_block=True,
                          max_chunk_len=C)
    plan_id = register(plan)
    lens0 = torch.full((B,), C, dtype=torch.int32, device="cuda")
    lens1 = torch.full((B,), L, dtype=torch.int32, device="cuda")
    chunks = [(q[:, :C].contiguous(), k[:, :C].contiguous(), v[:, :C].contiguous(), lens0, 0),
              (q[:, C:].contiguous(), k[:, C:].contiguous(), v[:, C:].contiguous(), lens1, C)]

    def step(qc, kc, vc, lens, prefix):
        return chunked_prefill_attention(qc, kc, vc, case["k_cache"], case["v_cache"],
                                         case["page_table"], lens, pooled, prefix, plan_id) * 1.0

    eager = [plan(qc, kc, vc, case["k_cache"], case["v_cache"], case["page_table"], lens,
                  pooled, max_prefix_len=prefix).clone() for qc, kc, vc, lens, prefix in chunks]
    compiled = torch.compile(step, fullgraph=True)
    got = [compiled(*chunk) for chunk in chunks]
    torch.cuda.synchronize()
    for a, b in zip(got, eager):
        assert torch.equal(a, b)
    # Capture the second chunk (its cache writes repeat the same values).
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step(*chunks[1])
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            captured = step(*chunks[1])
    captured.fill_(math.nan)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, eager[1])
