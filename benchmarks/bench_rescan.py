#!/usr/bin/env python3
"""Re-index of an unchanged library (target: 10,000 images in under 10 s).

The library is the 20,000-image store bench_memory.py leaves (cifar10-test and a re-encoded
copy; twice the target's size, and indexing it again here would cost minutes), or, without
it, ../shared/datasets/cifar10-test (10,000 JPEGs) indexed once for real with
efficientnet-lite0 (kept between runs under $ORGANIZER_BENCH_DIR). Then `organizer index` runs
again on the unchanged folder, as a whole command (process start included), several times;
nothing may be decoded or embedded, and no network may be loaded.

Usage: bench_rescan.py [--quick] [--repeats N] [--own-library]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATASETS, WORK, machine, median, need, organizer, parse_index, run, save, subset  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a 2,000-image subset")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--own-library", action="store_true", help="index cifar10-test even if bench_memory's store exists")
    a = ap.parse_args()
    cifar = need(DATASETS / "cifar10-test")
    folder = subset(cifar, WORK / "cifar-2000", 2000, stride=5) if a.quick else cifar
    store = WORK / "stores" / f"rescan-{'quick' if a.quick else 'full'}"
    memory_store = WORK / "stores" / "memory" / "big"
    if not a.quick and not a.own_library and (memory_store / "organizer.db").exists() \
            and (WORK / "cifar-doubled-20000" / ".complete").exists():
        folder, store = WORK / "cifar-doubled-20000", memory_store
    first = None
    if not (store / "organizer.db").exists():
        print(f"indexing {folder} once (efficientnet-lite0)...", flush=True)
    res = run(organizer("index", folder, "--store", store, "--backbone", "efficientnet-lite0"))
    first = parse_index(res["stdout"])
    first["wall_s"] = res["wall_s"]
    print(f"first pass: {first}", flush=True)
    times, reports = [], []
    for r in range(a.repeats):
        res = run(organizer("index", folder, "--store", store))
        info = parse_index(res["stdout"])
        if info["embedded"] or info["reused"] or info["unchanged"] != info["files"]:
            raise SystemExit(f"an unchanged library was not recognised as unchanged: {info}")
        times.append(res["wall_s"])
        reports.append(info["seconds"])
        print(f"rescan {r + 1}: {res['wall_s']:.2f} s wall ({info['seconds']:.2f} s inside index)", flush=True)
    result = {"machine": machine(), "folder": str(folder), "files": first["files"], "first_pass": first,
              "rescan_wall_s": times, "rescan_inside_s": reports, "median_wall_s": median(times),
              "median_inside_s": median(reports),
              "command": f"organizer index {folder} --store {store}"}
    print(f"unchanged {first['files']}-image library: median {median(times):.2f} s", flush=True)
    save("rescan-quick" if a.quick else "rescan", result)


if __name__ == "__main__":
    main()
