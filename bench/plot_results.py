"""Plots and tables of docs/performance.md from the committed JSON under
bench/results/ (no GPU needed; needs matplotlib).

    python3 bench/plot_results.py [--date 2026-11-30] [--fidelity F.json] [--only-fidelity]
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
IMAGES = ROOT / "docs" / "images"

STYLE = {
    "sdpa_flash": ("SDPA flash (dense)", "0.4", "s"),
    "compact_dense": ("ours, dense", "tab:gray", "D"),
    "flex_sparse": ("FlexAttention block-sparse (no selection)", "tab:orange", "^"),
    "compact_s4": ("ours, s = G = 4 (group union)", "tab:blue", "o"),
    "compact_s1": ("ours, s = 1 (per-head tables)", "tab:green", "o"),
    "compact_s1_qb": ("ours, s = 1, a table per query block", "tab:olive", "v"),
    "compact_s2": ("ours, s = 2 (sub-group union)", "tab:cyan", "o"),
    "quoka": ("QUOKA-style (token top-k, gather + flash)", "tab:red", "*"),
}


def load(name):
    return json.loads((RESULTS / name).read_text())


def key(row):
    if row["method"] == "compact" and row.get("s") is None and "group_slack" in row:
        return f"compact_adaptive{row['group_slack']:g}"
    k = row["method"] + (f"_s{row['s']}" if row["method"] == "compact" else "")
    return k + ("_qb" if row.get("per_query_block") else "")


def style(k):
    """Label, color and marker of a series (adaptive ones by their slack)."""
    if k.startswith("compact_adaptive"):
        slack = k[len("compact_adaptive"):]
        color = {"0.5": "tab:brown", "2": "tab:pink"}.get(slack, "tab:purple")
        return (f"ours, s chosen on the device (slack {slack})", color, "P")
    return STYLE[k]


def prefill_speedups(grid):
    """Whole-prefill speedup over SDPA flash per (B, C), against L."""
    by = defaultdict(dict)
    for r in grid["rows"]:
        by[(r["B"], r["C"], r["L"])][key(r)] = r["prefill_ms"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True)
    for i, B in enumerate((1, 8)):
        for j, C in enumerate((512, 1024, 2048)):
            ax = axes[i][j]
            Ls = sorted(L for (b, c, L) in by if b == B and c == C)
            for k in ("compact_s1_qb", "compact_s1", "compact_s4", "flex_sparse", "compact_dense"):
                ys = [by[(B, C, L)]["sdpa_flash"] / by[(B, C, L)][k] for L in Ls]
                label, color, marker = STYLE[k]
                ax.plot([L // 1024 for L in Ls], ys, marker=marker, color=color, label=label)
            ax.axhline(1.0, color="0.6", lw=0.8, ls="--")
            ax.set_title(f"B = {B}, C = {C}")
            ax.set_xscale("log", base=2)
            ax.set_xticks([32, 64, 128], ["32K", "64K", "128K"])
            ax.set_ylabel("speedup over SDPA flash")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Whole chunked prefill of one layer (ours includes append, pooling, selection)")
    fig.tight_layout()
    fig.savefig(IMAGES / "prefill-speedup.png", dpi=110)
    plt.close(fig)
    return by


def stage_breakdown(last):
    """Last chunk (C = 1024): selection and attention per method."""
    rows = defaultdict(dict)
    for r in last["rows"]:
        rows[(r["B"], r["L"])][key(r)] = r
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, B in zip(axes, (1, 8)):
        Ls = sorted(L for (b, L) in rows if b == B)
        names = [("compact_s4", "ours s=4"), ("compact_s1", "ours s=1"),
                 ("compact_s1_qb", "ours s=1 per qb"), ("gather_dense", "gather + flash")]
        width = 0.2
        for n, (k, label) in enumerate(names):
            sel = [rows[(B, L)][k]["select_ms"] for L in Ls]
            att = [rows[(B, L)][k]["attention_ms"] for L in Ls]
            xs = [x + (n - 1.5) * width for x in range(len(Ls))]
            color = {"compact_s4": "tab:blue", "compact_s1": "tab:green",
                     "compact_s1_qb": "tab:olive", "gather_dense": "tab:red"}[k]
            ax.bar(xs, sel, width, color="tab:purple", label="selection" if n == 0 else None)
            ax.bar(xs, att, width, bottom=sel, color=color,
                   label=f"{label}: attention" + (" (gather incl.)" if k == "gather_dense" else ""))
        ax.set_xticks(range(len(Ls)), [f"{L // 1024}K" for L in Ls])
        ax.set_ylabel("ms (last chunk)")
        ax.set_title(f"B = {B}, C = 1024; dense SDPA: " +
                     ", ".join(f"{rows[(B, L)]['sdpa_flash']['last_chunk_ms']:.1f}" for L in Ls) +
                     " ms")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMAGES / "last-chunk-stages.png", dpi=110)
    plt.close(fig)
    return rows


def frontier(sweep):
    """Relative error against dense vs whole-prefill time, per alpha."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, B in zip(axes, (8, 1)):
        pts = defaultdict(list)
        for r in sweep["rows"]:
            if r["B"] == B and r["method"] != "sdpa_flash" and "alpha" in r:
                pts[key(r)].append((r["prefill_ms"], r["err_vs_dense"], r["alpha"]))
        for k, ps in pts.items():
            ps.sort(key=lambda p: p[2])
            label, color, marker = style(k)
            ax.plot([p[0] for p in ps], [p[1] for p in ps], marker=marker, color=color,
                    label=label, ls="-")
            for t, e, a in ps:
                ax.annotate(f"{a:g}", (t, e), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel("whole prefill, ms (log)")
        ax.set_ylabel("relative error vs dense, last chunk (log)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"B = {B}, C = 1024, L = 128K (labels: alpha)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMAGES / "frontier.png", dpi=110)
    plt.close(fig)


def fidelity(fid):
    """Structured inputs (bench/fidelity.py): relative error and needle
    retrieval of the last chunk against whole-prefill time, a panel per level
    (the first (B, C, L) of the file)."""
    first = fid["rows"][0]
    rows = [r for r in fid["rows"] if (r["B"], r["C"], r["L"]) ==
            (first["B"], first["C"], first["L"])]
    levels = list(dict.fromkeys(r["level"] for r in rows))
    fig, axes = plt.subplots(2, len(levels), figsize=(5 * len(levels), 8), squeeze=False)
    for j, level in enumerate(levels):
        curves = defaultdict(list)
        for r in rows:
            if r["level"] == level:
                curves[key(r)].append(r)
        for k, rs in curves.items():
            rs.sort(key=lambda r: r.get("alpha", 0))
            label, color, marker = STYLE[k]
            ts = [r["prefill_ms"] for r in rs]
            for ax, metric in ((axes[0][j], "err_vs_dense"), (axes[1][j], "needle_acc")):
                ax.plot(ts, [r.get(metric) for r in rs], marker=marker, color=color,
                        label=label, ms=9 if marker == "*" else 6)
            for r in rs:
                if "alpha" in r:
                    axes[0][j].annotate(f"{r['alpha']:g}", (r["prefill_ms"], r["err_vs_dense"]),
                                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        thresh = fid["workload"]["needle_threshold"]
        for i, ylabel in enumerate(("relative error vs dense fp32, last chunk (log)",
                                    f"needle rows retrieved (cos > {thresh})")):
            ax = axes[i][j]
            ax.set_xscale("log")
            ax.set_xlabel("whole prefill attention, ms (log)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        axes[0][j].set_yscale("log")
        axes[1][j].set_ylim(-0.05, 1.05)
        axes[0][j].set_title(f"{level}: B = {first['B']}, C = {first['C']}, "
                             f"L = {first['L'] // 1024}K (labels: alpha)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Structured inputs: fidelity against time (ours and QUOKA include selection)")
    fig.tight_layout()
    fig.savefig(IMAGES / "fidelity.png", dpi=110)
    plt.close(fig)


def fidelity_table(fid):
    print()
    print("| level | method | alpha | whole prefill ms | density | recall | error vs dense | "
          "error, rows without needle | needles retrieved |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in fid["rows"]:
        needle = f"{r['needle_acc']:.2f}" if "needle_acc" in r else "-"
        alpha = f"{r['alpha']:g}" if "alpha" in r else "-"
        print(f"| {r['level']} | {key(r)} | {alpha} | {r['prefill_ms']:.1f} | "
              f"{r['density']:.3f} | {r['recall']:.3f} | {r['err_vs_dense']:.4f} | "
              f"{r['err_background']:.4f} | {needle} |")


def dense_throughput(last):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method, label, color in (("compact_dense", "ours, dense", "tab:blue"),
                                 ("sdpa_flash", "SDPA flash", "0.4"),
                                 ("sdpa_cudnn", "SDPA cuDNN", "tab:red")):
        for B, ls in ((8, "-"), (1, "--")):
            pts = sorted((r["L"], r["tflops"]) for r in last["rows"]
                         if r["method"] == method and r["B"] == B)
            ax.plot([p[0] // 1024 for p in pts], [p[1] for p in pts], ls=ls, marker="o",
                    color=color, label=f"{label}, B = {B}")
    ax.set_xscale("log", base=2)
    ax.set_xticks([32, 64, 128], ["32K", "64K", "128K"])
    ax.set_ylabel("TFLOP/s (useful, last chunk)")
    ax.set_title("Dense causal attention of the last chunk, C = 1024")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMAGES / "dense-throughput.png", dpi=110)
    plt.close(fig)


def tables(by, last):
    print("| B | C | L | SDPA flash | ours dense | Flex sparse | ours s=4 | ours s=1 | "
          "ours s=1 per qb | best ours vs SDPA | Flex / best ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (B, C, L), r in sorted(by.items()):
        best = min(r["compact_s4"], r["compact_s1"], r["compact_s1_qb"])
        print(f"| {B} | {C} | {L // 1024}K | {r['sdpa_flash']:.1f} | {r['compact_dense']:.1f} | "
              f"{r['flex_sparse']:.1f} | {r['compact_s4']:.1f} | {r['compact_s1']:.1f} | "
              f"{r['compact_s1_qb']:.1f} | {r['sdpa_flash'] / best:.1f}x | "
              f"{r['flex_sparse'] / best:.2f}x |")
    print()
    print("| B | L | SDPA flash | cuDNN | ours dense | TFLOP/s ours / SDPA | select | "
          "s=4 attn (union) | s=1 attn (union) | s=1 per qb attn (density) | Flex sparse attn "
          "(mask) | gather + flash |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (B, L), r in sorted(last.items()):
        print(f"| {B} | {L // 1024}K | {r['sdpa_flash']['last_chunk_ms']:.2f} | "
              f"{r['sdpa_cudnn']['last_chunk_ms']:.2f} | {r['compact_dense']['last_chunk_ms']:.2f} | "
              f"{r['compact_dense']['tflops']:.0f} / {r['sdpa_flash']['tflops']:.0f} | "
              f"{r['compact_s4']['select_ms']:.3f} | "
              f"{r['compact_s4']['attention_ms']:.2f} ({r['compact_s4']['density_union']:.3f}) | "
              f"{r['compact_s1']['attention_ms']:.2f} ({r['compact_s1']['density_union']:.3f}) | "
              f"{r['compact_s1_qb']['attention_ms']:.2f} "
              f"({r['compact_s1_qb']['density_union']:.3f}) | " + (
                  f"{r['flex_sparse']['attention_ms']:.2f} ({r['flex_sparse']['density_mask']:.3f})"
                  if "flex_sparse" in r else "-") + " | "
              f"{r['gather_dense']['attention_ms']:.2f} |")


def frontier_table(sweep):
    print()
    print("| B | alpha | method | whole prefill ms | density | error vs dense |")
    print("|---|---|---|---|---|---|")
    for r in sweep["rows"]:
        if r["method"] == "sdpa_flash":
            continue
        density = r.get("density_union", r.get("density_mask"))
        print(f"| {r['B']} | {r['alpha']:g} | {key(r)} | {r['prefill_ms']:.1f} | "
              f"{density:.3f} | {r['err_vs_dense']:.3f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--date", default="2026-11-30")
    ap.add_argument("--fidelity", default=None,
                    help="fidelity JSON (default: the newest bench/results/fidelity-*.json)")
    ap.add_argument("--only-fidelity", action="store_true")
    args = ap.parse_args()
    fids = [Path(args.fidelity)] if args.fidelity else sorted(RESULTS.glob("fidelity-*.json"))
    if fids and fids[-1].exists():
        IMAGES.mkdir(parents=True, exist_ok=True)
        fid = json.loads(fids[-1].read_text())
        fidelity(fid)
        fidelity_table(fid)
    else:
        print("no fidelity results: docs/images/fidelity.png not drawn")
    if args.only_fidelity:
        return
    IMAGES.mkdir(parents=True, exist_ok=True)
    grid = load(f"prefill-grid-{args.date}.json")
    last = load(f"last-chunk-{args.date}.json")
    by = prefill_speedups(grid)
    rows = stage_breakdown(last)
    sweep = load(f"frontier-{args.date}.json")
    frontier(sweep)
    dense_throughput(last)
    tables(by, rows)
    frontier_table(sweep)


if __name__ == "__main__":
    main()
