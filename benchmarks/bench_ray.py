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

With --small N each round also indexes the first N photos, and the two sizes give each
configuration's marginal images/s (what one more photo costs once a run is going) and its
fixed start (wall time the marginal rate does not explain: joining, actors, imports, exit).

With --baseline TREE a fourth configuration, ray-2nodes-baseline, runs the same command from
another checkout (e.g. main before a change) on the same 2-node cluster, interleaved with the rest.

Usage: bench_ray.py [--limit N] [--repeats N] [--small N] [--profile] [--only local,ray-2nodes] [--baseline TREE]
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
    ap.add_argument("--profile", action="store_true", help="print the Ray nodes' CPU by kind of process")
    ap.add_argument("--small", type=int, default=None,
                    help="also index the first N photos each round: the marginal rate and the fixed start")
    ap.add_argument("--only", default=None, help="comma-separated configurations to run (default: all)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout: also run its `organizer index` on the 2-node cluster (ray-2nodes-baseline)")
    args = ap.parse_args()
    if args.cluster_rows:
        return bench_cluster(args.cluster_rows, args.max_fit)
    from ray_engine.cluster import LocalCluster

    photos = subset(need(DATASETS / "caltech101-8"), WORK / f"ray-photos-{args.limit or 'all'}", args.limit)
    seed = fresh_store(WORK / "ray-seed")
    run(organizer("index", photos, "--store", seed, "--backbone", "efficientnet-lite0"))  # exports ONNX once
    chosen = args.only.split(",") if args.only else ["local", "ray-1node", "ray-2nodes"]
    if args.baseline:
        chosen += ["ray-2nodes-baseline"]
    clusters = {name: LocalCluster().start(workers=w) for name, w in (("ray-1node", 0), ("ray-2nodes", 1))
                if name in chosen or (name == "ray-2nodes" and args.baseline)}
    if args.baseline:
        clusters["ray-2nodes-baseline"] = clusters["ray-2nodes"]
    rows: dict[str, list[dict]] = {k: [] for k in chosen}
    small_rows: dict[str, list[dict]] = {k: [] for k in chosen}
    small = subset(photos, WORK / f"ray-photos-first-{args.small}", args.small) if args.small else None

    def one(r: int, name: str, folder: Path, into: dict) -> dict:
        store = fresh_store(WORK / f"ray-{name}", onnx_from=seed)
        cmd = organizer("index", folder, "--store", store, "--backbone", "efficientnet-lite0")
        env = ENV
        if name in clusters:
            cmd += ["--engine", "ray", "--ray-address", clusters[name].address]
            env = clusters[name].env(ORGANIZER_USER_CACHE=ENV["ORGANIZER_USER_CACHE"])
        load_before = os.getloadavg()[0]
        sampler = NodesCpu({k: c for k, c in clusters.items() if not k.endswith("-baseline")})
        node_name = name.removesuffix("-baseline")  # the baseline runs on ray-2nodes' cluster
        res = run(cmd, env=env, rss=True, cwd=args.baseline.resolve() if name.endswith("-baseline") else None)
        nodes = sampler.stop()
        if args.profile and name in clusters:
            print(f"  CPU s by process: {sampler.by_process().get(node_name)}", flush=True)
        info = parse_index(res["stdout"])
        # CPU of the whole work: the command (local: with its decode processes) plus, on Ray,
        # every process of its cluster's nodes (raylets, GCS, actors): less sensitive than
        # wall time to what else runs on a shared machine
        cpu = res["cpu_s"] + nodes.get(node_name, 0.0)
        row = {"wall_s": res["wall_s"], "images_s": info["embedded"] / res["wall_s"],
               "command_cpu_s": res["cpu_s"], "cpu_s": cpu, "cpu_ms_per_image": 1000 * cpu / info["embedded"],
               "idle_clusters_cpu_s": sum(v for k, v in nodes.items() if k != node_name),
               "loadavg_before": load_before,
               "driver_peak_rss_mib": res["peak_rss_main_mib"], "runtime": info["runtime"],
               "embedded": info["embedded"], "loadavg": res["loadavg"]}
        into[name].append(row)
        print(f"round {r + 1} {name:>10}: {info['embedded']} photos, {row['images_s']:6.1f} images/s "
              f"({res['wall_s']:.1f} s, {row['cpu_ms_per_image']:.1f} ms CPU an image, driver peak "
              f"{row['driver_peak_rss_mib']:.0f} MiB, load {load_before:.1f} -> {res['loadavg']:.1f})", flush=True)
        return row

    try:
        for r in range(args.repeats):
            # the order rotates each round: a configuration's place in a round changes its speed
            # (a fixed order made whichever Ray configuration ran second the faster, both ways round)
            order = list(rows)[r % len(rows):] + list(rows)[:r % len(rows)]
            for name in order:
                one(r, name, photos, rows)
                if small is not None:
                    one(r, name, small, small_rows)
    finally:
        for c in {id(c): c for c in clusters.values()}.values():
            c.stop()
    med = {k: median([x["images_s"] for x in v]) for k, v in rows.items()}
    cpu = {k: median([x["cpu_ms_per_image"] for x in v]) for k, v in rows.items()}
    loads = [x[key] for v in rows.values() for x in v for key in ("loadavg_before", "loadavg")]
    result = {"machine": machine(), "photos": next(iter(rows.values()))[0]["embedded"], "repeats": args.repeats,
              "runs": rows, "median_images_s": med, "median_cpu_ms_per_image": cpu,
              "loadavg_range": [min(loads), max(loads)]}
    for k, v in med.items():
        print(f"{k:>10}: {v:6.1f} images/s, {cpu[k]:.1f} ms CPU an image (medians of {args.repeats})")
    if small is not None:
        # What one more photo costs once a run is going: the start (joining, actors, imports) cancels
        # out between the two sizes of the same round
        marginal = {k: [(b["embedded"] - a["embedded"]) / (b["wall_s"] - a["wall_s"])
                        for a, b in zip(small_rows[k], v)] for k, v in rows.items()}
        marginal_cpu = {k: [1000 * (b["cpu_s"] - a["cpu_s"]) / (b["embedded"] - a["embedded"])
                            for a, b in zip(small_rows[k], v)] for k, v in rows.items()}
        start = {k: [b["wall_s"] - b["embedded"] / m for b, m in zip(v, marginal[k])] for k, v in rows.items()}
        result.update(small_runs=small_rows, marginal_images_s=marginal, marginal_cpu_ms_per_image=marginal_cpu,
                      fixed_start_s=start)
        for k in rows:
            print(f"{k:>10}: marginal {median(marginal[k]):6.1f} images/s {[round(x, 1) for x in marginal[k]]}, "
                  f"{median(marginal_cpu[k]):.1f} ms CPU an image; fixed start {median(start[k]):.1f} s")
    if "ray-2nodes-baseline" in rows and "local" in rows:
        b = "ray-2nodes-baseline"
        result.update(overhead_baseline_vs_local=1 - med[b] / med["local"])
        print(f"baseline ({args.baseline}) on 2 nodes vs local: {100 * result['overhead_baseline_vs_local']:+.1f}% "
              f"overhead in images/s, {100 * (cpu[b] / cpu['local'] - 1):+.1f}% in CPU an image")
    if not {"local", "ray-1node", "ray-2nodes"} <= set(rows):
        save("ray" + (f"-{args.limit}" if args.limit else ""), result)
        return
    result.update(overhead_2nodes_vs_local=1 - med["ray-2nodes"] / med["local"],
                  cpu_overhead_2nodes_vs_local=cpu["ray-2nodes"] / cpu["local"] - 1,
                  speedup_2nodes_vs_1node=med["ray-2nodes"] / med["ray-1node"])
    print(f"Ray on 2 nodes vs local: {100 * result['overhead_2nodes_vs_local']:+.1f}% overhead in images/s "
          f"(target <= 15%), {100 * result['cpu_overhead_2nodes_vs_local']:+.1f}% in CPU an image; "
          f"2 nodes vs 1: {result['speedup_2nodes_vs_1node']:.2f}x; load average {min(loads):.1f}-{max(loads):.1f}")
    if small is not None:
        m = {k: median(v) for k, v in result["marginal_images_s"].items()}
        result["marginal_overhead_2nodes_vs_local"] = 1 - m["ray-2nodes"] / m["local"]
        print(f"marginal: Ray on 2 nodes vs local {100 * result['marginal_overhead_2nodes_vs_local']:+.1f}%")
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
        self.titles: dict[int, str] = {}
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
                    if pid not in self.titles or self.titles[pid].startswith("ray::IDLE"):
                        self.titles[pid] = _title(pid, fields[0])

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

    def by_process(self) -> dict[str, dict[str, float]]:
        """CPU seconds by cluster and kind of process (raylet, gcs_server, an actor's title...)."""
        out: dict[str, dict[str, float]] = {}
        for pid, (name, cpu) in self.last.items():
            used = cpu - self.first.get(pid, 0.0)
            if used > 0:
                per = out.setdefault(name, {})
                per[self.titles[pid]] = round(per.get(self.titles[pid], 0.0) + used, 2)
        return {k: dict(sorted(v.items(), key=lambda kv: -kv[1])) for k, v in out.items()}


def _title(pid: int, state: str) -> str:
    """A process's kind: a Ray worker's title (`ray::EmbedActor...`), else its program's name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
    first = argv[0].decode(errors="replace")
    if first.startswith("ray::"):
        return first.split("(")[0][:60]
    script = next((Path(a.decode(errors="replace")).name for a in argv[1:3] if a.endswith(b".py")), "")
    return f"{comm} {script}".strip()


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
