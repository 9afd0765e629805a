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

With --cluster-rows N it measures `organizer cluster` instead: a synthetic store of N 1280-d
vectors, clustered with --max-fit M by the local engine and with --engine ray (2 nodes), the
driver's peak anonymous memory (sampled from /proc) and whether both saved the same rows.

Usage: bench_ray.py [--limit N] [--repeats N]
       bench_ray.py --cluster-rows N [--max-fit M]
"""
from __future__ import annotations

import argparse
import os
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
    ap.add_argument("--cluster-rows", type=int, default=None, help="measure `cluster` on a synthetic store instead")
    ap.add_argument("--max-fit", type=int, default=5000)
    args = ap.parse_args()
    if args.cluster_rows:
        return bench_cluster(args.cluster_rows, args.max_fit)
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
                load_before = os.getloadavg()[0]
                sampler = NodesCpu(clusters)
                res = run(cmd, env=env, rss=True)
                nodes = sampler.stop()
                info = parse_index(res["stdout"])
                # CPU of the whole work: the command (local: with its decode processes) plus, on Ray,
                # every process of its cluster's nodes (raylets, GCS, actors): less sensitive than
                # wall time to what else runs on a shared machine
                cpu = res["cpu_s"] + nodes.get(name, 0.0)
                row = {"wall_s": res["wall_s"], "images_s": info["embedded"] / res["wall_s"],
                       "command_cpu_s": res["cpu_s"], "cpu_s": cpu, "cpu_ms_per_image": 1000 * cpu / info["embedded"],
                       "idle_clusters_cpu_s": sum(v for k, v in nodes.items() if k != name),
                       "loadavg_before": load_before,
                       "driver_peak_rss_mib": res["peak_rss_main_mib"], "runtime": info["runtime"],
                       "embedded": info["embedded"], "loadavg": res["loadavg"]}
                rows[name].append(row)
                print(f"round {r + 1} {name:>10}: {row['images_s']:6.1f} images/s ({res['wall_s']:.1f} s, "
                      f"{row['cpu_ms_per_image']:.1f} ms CPU an image, driver peak {row['driver_peak_rss_mib']:.0f} MiB, "
                      f"load {load_before:.1f} -> {res['loadavg']:.1f})", flush=True)
    finally:
        for c in clusters.values():
            c.stop()
    med = {k: median([x["images_s"] for x in v]) for k, v in rows.items()}
    cpu = {k: median([x["cpu_ms_per_image"] for x in v]) for k, v in rows.items()}
    loads = [x[key] for v in rows.values() for x in v for key in ("loadavg_before", "loadavg")]
    result = {"machine": machine(), "photos": rows["local"][0]["embedded"], "repeats": args.repeats, "runs": rows,
              "median_images_s": med, "median_cpu_ms_per_image": cpu, "loadavg_range": [min(loads), max(loads)],
              "overhead_2nodes_vs_local": 1 - med["ray-2nodes"] / med["local"],
              "cpu_overhead_2nodes_vs_local": cpu["ray-2nodes"] / cpu["local"] - 1,
              "speedup_2nodes_vs_1node": med["ray-2nodes"] / med["ray-1node"]}
    for k, v in med.items():
        print(f"{k:>10}: {v:6.1f} images/s, {cpu[k]:.1f} ms CPU an image (medians of {args.repeats})")
    print(f"Ray on 2 nodes vs local: {100 * result['overhead_2nodes_vs_local']:+.1f}% overhead in images/s "
          f"(target <= 15%), {100 * result['cpu_overhead_2nodes_vs_local']:+.1f}% in CPU an image; "
          f"2 nodes vs 1: {result['speedup_2nodes_vs_1node']:.2f}x; load average {min(loads):.1f}-{max(loads):.1f}")
    save("ray" + (f"-{args.limit}" if args.limit else ""), result)


class NodesCpu:
    """CPU seconds the processes of LocalClusters' nodes use while it runs, sampled every 0.1 s.
    Each node is a session of its own; Ray's workers (the actors) are in its session but in
    process groups of their own, and die at the end of a run without their time reaching any
    parent (so a before/after reading misses them): each process's last reading counts."""

    def __init__(self, clusters):
        import threading

        self.sessions = {node.pid: name for name, c in clusters.items() for node in c.nodes}
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.read(first=True)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def read(self, first=False):
        tick = os.sysconf("SC_CLK_TCK")
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2:].split()
                name = self.sessions.get(int(fields[3]))  # field 6: the session
                if name is not None:
                    cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
                    pid = int(entry)
                    if first:
                        self.first[pid] = cpu
                    self.last[pid] = (name, cpu)

    def run(self):
        while not self.done.wait(0.1):
            self.read()

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.thread.join()
        self.read()
        out: dict[str, float] = {}
        for pid, (name, cpu) in self.last.items():
            out[name] = out.get(name, 0.0) + cpu - self.first.get(pid, 0.0)
        return out


class AnonPeak:
    """Peak RssAnon and VmRSS of one process, sampled every 50 ms: a memory map's pages count in
    VmRSS while they are resident, but they are the file's, given back under pressure."""

    def __init__(self, pid: int):
        import threading

        self.pid, self.anon, self.rss = pid, 0, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        while not self.done.wait(0.05):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            self.anon = max(self.anon, int(fields.get("RssAnon", "0 kB").split()[0]) >> 10)
            self.rss = max(self.rss, int(fields.get("VmRSS", "0 kB").split()[0]) >> 10)


def bench_cluster(n: int, max_fit: int) -> None:
    import sqlite3
    import subprocess
    import time

    from ray_engine.cluster import LocalCluster
    from ray_engine.synthetic import synthetic_store

    store = synthetic_store(fresh_store(WORK / f"ray-cluster-{n}"), n)
    cluster = LocalCluster().start(workers=1)
    out = {"machine": machine(), "rows": n, "max_fit": max_fit, "runs": {}}
    saved = {}
    try:
        for name in ("local", "ray-2nodes"):
            cmd = organizer("cluster", "--store", store, "--max-fit", max_fit)
            env = ENV
            if name != "local":
                cmd += ["--engine", "ray", "--ray-address", cluster.address]
                env = cluster.env(ORGANIZER_USER_CACHE=ENV["ORGANIZER_USER_CACHE"])
            t = time.perf_counter()
            proc = subprocess.Popen([str(c) for c in cmd], env=env, cwd=HERE.parent, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            peak = AnonPeak(proc.pid)
            stdout, stderr = proc.communicate()
            peak.done.set()
            if proc.returncode:
                raise RuntimeError(stderr[-3000:])
            with sqlite3.connect(store / "organizer.db") as db:
                cid = db.execute("SELECT MAX(id) FROM clusterings").fetchone()[0]
                saved[name] = db.execute("SELECT image_id, cluster, core_cluster, probability, node FROM "
                                         "cluster_members WHERE clustering_id=? ORDER BY image_id", (cid,)).fetchall()
            out["runs"][name] = {"wall_s": round(time.perf_counter() - t, 1), "driver_peak_anon_mib": peak.anon,
                                 "driver_peak_rss_mib": peak.rss, "loadavg": os.getloadavg()[0],
                                 "summary": stdout.splitlines()[0]}
            print(name, out["runs"][name], flush=True)
    finally:
        cluster.stop()
    out["same_rows_saved"] = saved["local"] == saved["ray-2nodes"]
    out["matrix_mib"] = n * 1280 * 4 >> 20
    print(f"same rows saved: {out['same_rows_saved']}; the float32 matrix is {out['matrix_mib']} MiB")
    save(f"ray-cluster-{n}", out)


if __name__ == "__main__":
    main()
