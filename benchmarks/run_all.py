#!/usr/bin/env python3
"""Run every benchmark (what `make bench` does) and print the figures against their targets.

Each script also runs on its own (see its --help); results land in benchmarks/results/*.json.
The full run takes about 30 minutes on 2 idle cores without the clustering benchmark (the
naive loops, 22,000 images indexed for the memory figure, a million-vector search index;
generated data is kept under $ORGANIZER_BENCH_DIR, so later runs skip making it); --quick
runs every script on subsets in a few minutes. benchmarks/README.md has the figures.

Usage: run_all.py [--quick] [--skip embed,search,memory,rescan,cluster]
       ORGANIZER_BENCH_QUICK=1 make bench   (the same as --quick)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# memory before rescan: the rescan reuses the 20,000-image store the memory benchmark leaves.
# bench_cluster.py (clustering at scale) is run when it is there.
SCRIPTS = {"embed": "bench_embed.py", "search": "bench_search.py", "memory": "bench_memory.py",
           "rescan": "bench_rescan.py", "cluster": "bench_cluster.py"}


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
            lines.append(f"1. efficientnet-lite0 index vs naive_embed.py: {e['ratio_warm']:.1f}x steady, "
                         f"{e['ratio_cold']:.1f}x first run with export (target >= 5x)")
        if "clip" in embed:
            c = embed["clip"]
            lines.append(f"2. CLIP ViT-B-32 index vs naive open_clip loop: {c['ratio_warm']:.1f}x steady, "
                         f"{c['ratio_cold']:.1f}x first run (target >= 3x) [{c['runtime']}]")
        if "big" in embed:
            lines.append(f"3. 12 MP JPEGs / original photos, images/s: {embed['big']['ratio']:.2f} (target >= 0.5)")
    rescan = load("rescan" + suffix)
    if rescan:
        lines.append(f"4. unchanged {rescan['files']:,}-image rescan: {rescan['median_wall_s']:.2f} s (target < 10 s "
                     "for 10,000)")
    cluster = load("cluster" + suffix)
    if cluster and isinstance(cluster.get("summary"), list):  # bench_cluster.py's own lines
        lines.extend(str(x) for x in cluster["summary"])
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
    a.quick = a.quick or os.environ.get("ORGANIZER_BENCH_QUICK", "") not in ("", "0")
    skip = set(filter(None, a.skip.split(",")))
    failed, took = [], {}
    for name, script in SCRIPTS.items():
        path = HERE / script
        if name in skip or not path.exists():
            continue
        print(f"== {script}", flush=True)
        cmd = [sys.executable, str(path)] + (["--quick"] if a.quick else [])
        t = time.time()
        if subprocess.run(cmd).returncode != 0:
            failed.append(script)
        took[script] = time.time() - t
    print("\n== time per script: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in took.items()))
    print("== summary")
    for line in summary(a.quick):
        print(line)
    print("\n== table for benchmarks/README.md")
    subprocess.run([sys.executable, str(HERE / "report.py")] + (["--quick"] if a.quick else []))
    if failed:
        print(f"failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
