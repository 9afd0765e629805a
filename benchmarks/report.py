#!/usr/bin/env python3
"""Print the markdown table of benchmarks/README.md from benchmarks/results/*.json, so the
README shows what the last run measured and nothing typed by hand.

Usage: report.py [--quick]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def fmt(xs, digits=1) -> str:
    return ", ".join(f"{x:.{digits}f}" for x in xs)


def cpu_ratio(block: dict, kind: str = "warm") -> float | None:
    """Ratio of CPU seconds per image, naive / ours (process trees, startup included on both
    sides): how much less work we do, which other programs' load does not change."""
    from statistics import median

    runs = block.get("runs", {})
    naive = [r["cpu_s"] / block["images"] for r in runs.get("naive", []) if r.get("cpu_s")]
    ours = [r["cpu_s"] / r["embedded"] for r in runs.get(kind, []) if r.get("cpu_s") and r.get("embedded")]
    return median(naive) / median(ours) if naive and ours else None


def cpu_note(block: dict, kind: str = "warm") -> str:
    r = cpu_ratio(block, kind)
    return f"; CPU-seconds per image {r:.1f}× fewer" if r else ""


def when(result: dict | None) -> str:
    return (result or {}).get("finished", "")


def rows(quick: bool) -> list[tuple[str, str, str, str, str]]:
    """(target, measured, verdict, command, when) per figure."""
    sfx = "-quick" if quick else ""
    q = " --quick" if quick else ""
    out = []
    embed = load("embed" + sfx)
    if embed and "effnet" in embed:
        e = embed["effnet"]
        out.append(("1. efficientnet-lite0 `organizer index` ≥ 5× naive_embed.py",
                     f"{e['images']} photos: naive {e['naive_median']:.1f} img/s [{fmt(e['naive_images_per_s'])}]; "
                     f"steady {e['warm_median']:.1f} [{fmt(e['warm_images_per_s'])}] = **{e['ratio_warm']:.1f}×**; "
                     f"first run with export {e['cold_median']:.1f} [{fmt(e['cold_images_per_s'])}] = "
                     f"{e['ratio_cold']:.1f}× ({e['runtime']}){cpu_note(e)}",
                     "met" if e["ratio_warm"] >= 5 else "not met", f"bench_embed.py --only effnet{q}", when(embed)))
    if embed and "clip" in embed:
        c = embed["clip"]
        steady = "" if c["warm_images_per_s"] == c["cold_images_per_s"] else \
            f"; steady {c['warm_median']:.1f} = {c['ratio_warm']:.1f}×"
        out.append(("2. CLIP ViT-B-32 `organizer index` ≥ 3× naive open_clip loop",
                    f"{c['images']} photos: naive {c['naive_median']:.1f} img/s [{fmt(c['naive_images_per_s'])}]; "
                    f"organizer {c['cold_median']:.1f} [{fmt(c['cold_images_per_s'])}] = **{c['ratio_cold']:.1f}×**"
                    f"{steady} ({c['runtime']}, no export needed){cpu_note(c)}" if not steady else
                    f"{c['images']} photos: naive {c['naive_median']:.1f}; first run {c['cold_median']:.1f} = "
                    f"{c['ratio_cold']:.1f}×{steady} ({c['runtime']}){cpu_note(c)}",
                    "met" if min(c["ratio_cold"], c["ratio_warm"]) >= 3 else "not met",
                    f"bench_embed.py --only clip{q}", when(embed)))
    if embed and "big" in embed:
        b = embed["big"]
        out.append(("3. 12-MP JPEGs ≥ 0.5× the images/s of the originals",
                    f"{b['images']} photos: originals {b['small_median']:.1f} img/s [{fmt(b['small_images_per_s'])}], "
                    f"12 MP {b['big_median']:.1f} [{fmt(b['big_images_per_s'])}] = **{b['ratio']:.2f}**",
                    "met" if b["ratio"] >= 0.5 else "not met", f"bench_embed.py --only big{q}", when(embed)))
    r = load("rescan" + sfx)
    if r:
        out.append(("4. unchanged 10,000-image re-index < 10 s",
                    f"{r['files']:,} files: median **{r['median_wall_s']:.2f} s** [{fmt(r['rescan_wall_s'], 2)}] "
                    f"(whole command; {r['median_inside_s']:.1f} s inside index)",
                    "met" if r["median_wall_s"] < 10 else "not met", f"bench_rescan.py{q}", when(r)))
    out.append(("5. clustering at scale", "see *Clustering* below", "", "bench_cluster.py", ""))
    n = 100_000 if quick else 1_000_000
    s = load(f"search-{n}-512")
    if s:
        st, fr = s["stored"], s["fresh"]
        out.append((f"6. search over {n:,} vectors: median < 20 ms, recall@10 ≥ 0.95",
                    f"{s['index']['kind']} nlist {s['index'].get('nlist')} nprobe {s['index'].get('nprobe')}: "
                    f"stored queries median **{st['median_ms']:.2f} ms** (p95 {st['p95_ms']:.1f}), recall@10 "
                    f"**{st['recall_at_10']:.3f}**; new queries {fr['median_ms']:.2f} ms, {fr['recall_at_10']:.3f}; "
                    f"exact flat {s['flat_median_ms']:.0f} ms; build {s['build_s']:.0f} s",
                    ("met" if fr["median_ms"] < 20 else "met for stored queries (`similar`); not for new ones")
                    if st["median_ms"] < 20 and min(st["recall_at_10"], fr["recall_at_10"]) >= 0.95 else "not met", f"bench_search.py{' --quick' if quick else ''}", when(s)))
    m = load("memory" + sfx)
    if m:
        out.append((f"7. peak RSS indexing {m['big']['images']:,} ≤ 1.5× {m['small']['images']:,}",
                    f"{m['small']['peak_rss_mib']:.0f} MiB vs {m['big']['peak_rss_mib']:.0f} MiB (indexer + decode "
                    f"processes) = **{m['ratio_tree']:.2f}**; indexer alone {m['ratio_main']:.2f}",
                    "met" if m["ratio_tree"] <= 1.5 else "not met", f"bench_memory.py{q}", when(m)))
    return out


def table(quick: bool) -> str:
    lines = ["| target | measured (medians; [each run]) | | command (in benchmarks/) | finished |",
             "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | `{d}` | {e} |" for a, b, c, d, e in rows(quick)]
    return "\n".join(lines)


def machine_line(quick: bool) -> str:
    embed = load("embed" + ("-quick" if quick else "")) or {}
    m = embed.get("machine")
    if not m:
        return ""
    return (f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB RAM, AVX-512 {m['avx512']}, AMX {m['amx_bf16']}; "
            f"Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
            + f"; load average at start {m['loadavg_start'][0]:.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    print(machine_line(a.quick))
    print()
    print(table(a.quick))
