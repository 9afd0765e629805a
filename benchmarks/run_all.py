#!/usr/bin/env python3
"""Run every benchmark (what `make bench` does) and print the figures against their targets.

Each script also runs on its own (see its --help); results land in benchmarks/results/*.json.
A full run takes a long while on 2 cores (about an hour: the naive CLIP loop, the 12-megapixel
JPEGs, 30,000 images indexed for the memory figure, a million-vector index); --quick runs
every script on subsets in a few minutes.

Usage: run_all.py [--quick] [--skip embed,rescan,search,memory,cluster]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCRIPTS = {"embed": "bench_embed.py", "rescan": "bench_rescan.py", "search": "bench_search.py",
           "memory": "bench_memory.py", "cluster": "cluster_quality.py"}


def load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def summary(quick: bool) -> list[str]:
    suffix = "-quick" if quick else ""
    lines = []
    embed = load("embed" + suffix)
    if embed:
        if "effnet" in embed:
            e = embed["effnet"]
            lines.append(f"1. efficientnet-lite0 index vs naive_embed.py: {e['ratio_cold']:.1f}x cold, "
                         f"{e['ratio_warm']:.1f}x warm (target >= 5x)")
        if "clip" in embed:
            c = embed["clip"]
            lines.append(f"2. CLIP ViT-B-32 index vs naive open_clip loop: {c['ratio_cold']:.1f}x cold, "
                         f"{c['ratio_warm']:.1f}x warm (target >= 3x) [{c['runtime']}]")
        if "big" in embed:
            lines.append(f"3. 12 MP JPEGs / original photos, images/s: {embed['big']['ratio']:.2f} (target >= 0.5)")
    rescan = load("rescan" + suffix)
    if rescan:
        lines.append(f"4. unchanged {rescan['files']}-image rescan: {rescan['median_wall_s']:.2f} s (target < 10 s)")
    n = 100_000 if quick else 1_000_000
    s = load(f"search-{n}-512")
    if s:
        lines.append(f"6. search over {n:,} x 512: median {s['stored']['median_ms']:.2f} ms, recall@10 "
                     f"{s['stored']['recall_at_10']:.3f} (target < 20 ms, >= 0.95), build {s['build_s']:.0f} s")
    m = load("memory" + suffix)
    if m:
        lines.append(f"7. peak RSS {m['big']['images']} / {m['small']['images']} images: {m['ratio_tree']:.2f} "
                     f"(target <= 1.5)")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip", default="")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    failed = []
    for name, script in SCRIPTS.items():
        path = HERE / script
        if name in skip or not path.exists():
            continue
        print(f"== {script}", flush=True)
        cmd = [sys.executable, str(path)] + (["--quick"] if a.quick else [])
        if subprocess.run(cmd).returncode != 0:
            failed.append(script)
    print("\n== summary")
    for line in summary(a.quick):
        print(line)
    if failed:
        print(f"failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
