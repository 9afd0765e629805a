#!/usr/bin/env python3
"""The Ray engine against the local engine on the same photos, in one run (issue 16).

Configurations, each `organizer index` into a fresh store (ONNX export already cached):
  local        the default engine: decode processes and inference threads on this machine
  ray-1node    a Ray cluster of one node with 1 CPU (1 actor)
  ray-2nodes   a head and a worker node, 1 CPU each (2 actors): the machine's 2 cores, as local
Clusters are started before the runs (`ray start`, on 127.0.0.1) and kept up, as a user would;
each command is timed whole (process start, joining the cluster, actors loading the network,
scan, decode, embed, writes). Rounds interleave the configurations; figures are medians.
Target: the Ray engine on the machine's cores within 15% of the local engine's images/s.

Usage: bench_ray.py [--limit N] [--repeats N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from common import DATASETS, ENV, WORK, fresh_store, machine, median, need, organizer, parse_index, run, save, subset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="photos of caltech101-8 (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from ray_engine.cluster import LocalCluster

    photos = subset(need(DATASETS / "caltech101-8"), WORK / f"ray-photos-{args.limit or 'all'}", args.limit)
    seed = fresh_store(WORK / "ray-seed")
    run(organizer("index", photos, "--store", seed, "--backbone", "efficientnet-lite0"))  # exports ONNX once
    clusters = {"ray-1node": LocalCluster().start(workers=0), "ray-2nodes": LocalCluster().start(workers=1)}
    rows: dict[str, list[dict]] = {"local": [], **{k: [] for k in clusters}}
    try:
        for r in range(args.repeats):
            for name in rows:
                store = fresh_store(WORK / f"ray-{name}", onnx_from=seed)
                cmd = organizer("index", photos, "--store", store, "--backbone", "efficientnet-lite0")
                env = ENV
                if name in clusters:
                    cmd += ["--engine", "ray", "--ray-address", clusters[name].address]
                    env = clusters[name].env(ORGANIZER_USER_CACHE=ENV["ORGANIZER_USER_CACHE"])
                res = run(cmd, env=env, rss=True)
                info = parse_index(res["stdout"])
                row = {"wall_s": res["wall_s"], "images_s": info["embedded"] / res["wall_s"],
                       # the command's own CPU (Ray: the driver alone; local: with its decode processes)
                       "command_cpu_s": res["cpu_s"],
                       "driver_peak_rss_mib": res["peak_rss_main_mib"], "runtime": info["runtime"],
                       "embedded": info["embedded"], "loadavg": res["loadavg"]}
                rows[name].append(row)
                print(f"round {r + 1} {name:>10}: {row['images_s']:6.1f} images/s ({res['wall_s']:.1f} s, "
                      f"driver peak {row['driver_peak_rss_mib']:.0f} MiB)", flush=True)
    finally:
        for c in clusters.values():
            c.stop()
    med = {k: median([x["images_s"] for x in v]) for k, v in rows.items()}
    result = {"machine": machine(), "photos": rows["local"][0]["embedded"], "repeats": args.repeats, "runs": rows,
              "median_images_s": med,
              "overhead_2nodes_vs_local": 1 - med["ray-2nodes"] / med["local"],
              "speedup_2nodes_vs_1node": med["ray-2nodes"] / med["ray-1node"]}
    for k, v in med.items():
        print(f"{k:>10}: {v:6.1f} images/s (median of {args.repeats})")
    print(f"Ray on 2 nodes vs local: {100 * result['overhead_2nodes_vs_local']:+.1f}% overhead (target <= 15%); "
          f"2 nodes vs 1: {result['speedup_2nodes_vs_1node']:.2f}x")
    save("ray" + (f"-{args.limit}" if args.limit else ""), result)


if __name__ == "__main__":
    main()
