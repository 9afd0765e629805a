#!/usr/bin/env python3
"""Paired A/B of `organizer index` against another source tree (issue 17's fixed costs).

Each pair runs this tree and the baseline tree on a fresh store of the same photos, one right
after the other, who goes first alternating, so the machine's other load hits both alike.
Reports per pair and as medians: wall clock and CPU seconds of the whole command (all its
processes), the indexer's own "first decoded files" stage, and how its decode processes started.

Photos: N caltech101-8 originals (as bench_index_stages.py picks them), and the first M of them.

Usage: bench_index_ab.py --baseline-tree DIR [--n 500] [--m 100] [--pairs 7] [--name index-ab]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index_stages import index_once  # noqa: E402
from common import DATASETS, WORK, machine, median, need, save, subset  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-tree", type=Path, required=True)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--m", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--name", default="index-ab")
    a = ap.parse_args()
    caltech = need(DATASETS / "caltech101-8")
    small = subset(caltech, WORK / f"small-{a.n}", a.n, stride=max(1, 2463 // a.n))
    folders = {f"{a.n}": small, f"{a.m}": subset(small, WORK / f"small-{a.n}-first-{a.m}", a.m)}
    stores = WORK / "stores" / "ab"
    index_once(folders[f"{a.m}"], stores / "seed")  # the per-user export cache: steady state after
    base = a.baseline_tree.resolve()
    runs: dict[str, list[dict]] = {}
    for p in range(a.pairs):
        for label, folder in folders.items():
            order = [("new", None), ("base", base)]
            for side, tree in (order if p % 2 == 0 else order[::-1]):
                r = index_once(folder, stores / f"{side}-{label}", tree)
                runs.setdefault(f"{side}_{label}", []).append(r)
                print(f"pair {p} {label:>4} {side:4}: wall {r['wall_s']:.2f} s, CPU {r['cpu_s']:.2f} s, first "
                      f"{r['stages'].get('first_items', 0):.2f} s, {r['stages'].get('start_method', '?')}, "
                      f"load {r['loadavg_after']:.1f}", flush=True)
    res = {"machine": machine(), "baseline_tree": str(base), "pairs": a.pairs, "runs": runs}
    for label in folders:
        new, old = runs[f"new_{label}"], runs[f"base_{label}"]
        summary = {}
        for key, get in (("wall_s", lambda r: r["wall_s"]), ("cpu_s", lambda r: r["cpu_s"]),
                         ("first_items_s", lambda r: r["stages"].get("first_items", 0.0))):
            n, o = [get(r) for r in new], [get(r) for r in old]
            summary[key] = {"new": median(n), "base": median(o),
                            "pair_ratios": [round(x / y, 3) for x, y in zip(n, o)],
                            "pairs_lower": sum(x < y for x, y in zip(n, o))}
        res[label] = summary
        print(f"{label} photos, medians of {a.pairs} pairs: " + "; ".join(
            f"{k} {v['new']:.3f} against {v['base']:.3f} ({v['new'] / v['base']:.3f}x, lower in "
            f"{v['pairs_lower']}/{a.pairs})" for k, v in summary.items()))
    save(a.name, res)


if __name__ == "__main__":
    main()
