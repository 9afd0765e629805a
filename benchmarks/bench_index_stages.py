#!/usr/bin/env python3
"""Where `organizer index` spends its time, against the backbone alone, in one run (issue 17).

For the same photos, each round measures:
  backbone   the cached EfficientNet-Lite0 ONNX export on random tensors, run as indexing runs
             it (INDEX_STREAMS streams of one intra-op thread, batch 32, micro-batches of 2),
             in its own process, timed inside;
  index      `organizer index` on a fresh store, the whole process, wall clock from here
             (process start and imports included), with the stages the indexer itself times
             ($ORGANIZER_PROFILE: scan, first decoded files, waiting for decoders, embedding,
             shard + SQLite writes) and process start = wall clock - the tool's own seconds;
  stages     per image, in one process, the read step's parts: read, hash, decode (draft
             mode), crop (resize + centre crop), thumbnail encode, as the workers run them.
Photos: N caltech101-8 originals (about 300x200), and the first M of them upscaled to 12 MP
JPEGs (made once under $ORGANIZER_BENCH_DIR, never under ../shared) with the same M originals
as their control. Medians of --repeats rounds; every round's load average is recorded, since
the machine is shared.

Usage: bench_index_stages.py [--n 300] [--big 100] [--repeats 3] [--name index-stages]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed import make_big  # noqa: E402
from common import (DATASETS, ENV, PY, ROOT, WORK, fresh_store, machine, median, need, organizer,  # noqa: E402
                    parse_index, run, save, subset)

BATCH = 32            # indexing's batch size (index_folder's default)
MICRO = 2             # TowerEmbedder.micro_batch for convnets


def onnx_file() -> Path:
    """The verified export indexing uses (the benchmark's per-user cache, filled by a seed run)."""
    files = sorted((Path(ENV["ORGANIZER_USER_CACHE"]) / "onnx").glob("efficientnet-lite0-*fp32*.onnx"))
    if not files:
        sys.exit("no cached EfficientNet-Lite0 export: run one `organizer index` first")
    return files[-1]


# -- the backbone alone (in its own process) -------------------------------------------------
def backbone_alone(path: str, streams: int, images: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from organizer.embed.runtime import OnnxRunner

    runners = [OnnxRunner(Path(path), threads=1, micro_batch=MICRO) for _ in range(streams)]
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(BATCH, 3, 224, 224)).astype(np.float32) for _ in range(streams)]
    for r, b in zip(runners, batches):
        r(b[:MICRO])  # first call allocates
    n_batches = max(streams, images // BATCH)
    t = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(lambda i: runners[i % streams](batches[i % streams]), range(n_batches)))
    dt = time.perf_counter() - t
    print(json.dumps({"images": n_batches * BATCH, "seconds": dt, "images_per_s": n_batches * BATCH / dt}))


def run_backbone(streams: int, images: int) -> dict:
    res = run([PY, Path(__file__).resolve(), "--backbone-alone", onnx_file(), str(streams), str(images)])
    out = json.loads(res["stdout"].strip().splitlines()[-1])
    out["loadavg"] = res["loadavg"]
    return out


# -- the whole process -----------------------------------------------------------------------
def index_once(folder: Path, store: Path, tree: Path | None = None) -> dict:
    """tree: run the organizer package of that source tree (the baseline) instead of this one."""
    fresh_store(store)
    profile = store.parent / (store.name + ".profile.json")
    profile.unlink(missing_ok=True)
    load_before = os.getloadavg()[0]
    res = run(organizer("index", folder, "--store", store, "--backbone", "efficientnet-lite0"),
              env={**ENV, "ORGANIZER_PROFILE": str(profile), **({"PYTHONPATH": str(tree)} if tree else {})})
    info = parse_index(res["stdout"])
    stages = json.loads(profile.read_text()) if profile.exists() else {}
    stages["process_start"] = res["wall_s"] - info["seconds"]
    return {"wall_s": res["wall_s"], "cpu_s": res["cpu_s"], "embedded": info["embedded"],
            "images_per_s": info["embedded"] / res["wall_s"], "runtime": info["runtime"],
            "loadavg_before": load_before, "loadavg_after": res["loadavg"], "stages": stages}


# -- the read step's parts, per image ----------------------------------------------------------
def read_stages(folder: Path, limit: int) -> dict:
    from organizer.embed import Preprocess
    from organizer.ingest.decode import decode_image, make_thumbnail
    from organizer.ingest.indexer import scan
    from organizer.store import content_hash

    t = time.perf_counter()
    rels = [r for r, _, _ in scan(folder)]
    walk = time.perf_counter() - t
    pre, thumb_size = Preprocess(224), 256
    totals = dict.fromkeys(("read", "hash", "decode", "crop", "thumb"), 0.0)
    for rel in rels[:limit]:
        t0 = time.perf_counter()
        data = (folder / rel).read_bytes()
        t1 = time.perf_counter()
        content_hash(data)
        t2 = time.perf_counter()
        decoded = decode_image(data, name=rel, min_side=max(pre.size, thumb_size))
        t3 = time.perf_counter()
        pre.crop(decoded.image)
        t4 = time.perf_counter()
        make_thumbnail(decoded.image, thumb_size)
        t5 = time.perf_counter()
        for k, a, b in (("read", t0, t1), ("hash", t1, t2), ("decode", t2, t3), ("crop", t3, t4), ("thumb", t4, t5)):
            totals[k] += b - a
    n = min(limit, len(rels))
    out = {k: 1000 * v / n for k, v in totals.items()}
    out["walk_per_file"] = 1000 * walk / max(1, len(rels))
    out["total"] = sum(out[k] for k in ("read", "hash", "decode", "crop", "thumb"))
    return out  # milliseconds per image


def stages_in_process(folder: Path, limit: int) -> dict:
    res = run([PY, Path(__file__).resolve(), "--read-stages", folder, str(limit)])
    out = json.loads(res["stdout"].strip().splitlines()[-1])
    out["loadavg"] = res["loadavg"]
    return out


def med(runs: list[dict], key: str):
    return median([r[key] for r in runs])


def med_stage(runs: list[dict], key: str):
    return median([r["stages"].get(key, 0.0) for r in runs])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="small photos (caltech101-8 originals)")
    ap.add_argument("--big", type=int, default=100, help="12 MP JPEGs (the first BIG photos upscaled)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help="a source tree of the code before a change: its `organizer index` runs in the same rounds")
    ap.add_argument("--name", default="index-stages", help="results file: benchmarks/results/NAME.json")
    ap.add_argument("--backbone-alone", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--read-stages", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.backbone_alone:
        return backbone_alone(a.backbone_alone[0], int(a.backbone_alone[1]), int(a.backbone_alone[2]))
    if a.read_stages:
        print(json.dumps(read_stages(Path(a.read_stages[0]), int(a.read_stages[1]))))
        return

    from organizer.ingest.indexer import default_workers, inference_streams

    streams = inference_streams(default_workers())
    caltech = need(DATASETS / "caltech101-8")
    small = subset(caltech, WORK / f"small-{a.n}", a.n, stride=max(1, 2463 // a.n))
    control = subset(small, WORK / f"small-{a.n}-first-{a.big}", a.big)
    print(f"making {a.big} 12-megapixel JPEGs (once)", flush=True)
    big = make_big(control, WORK / f"big12mp-from-{a.n}-{a.big}", a.big)
    stores = WORK / "stores" / "stages"
    index_once(control, stores / "seed")  # fills the per-user cache with the export: steady state after
    rounds = {"backbone": [], "small": [], "control": [], "big": [], "stages_small": [], "stages_big": [],
              "base_small": [], "base_control": [], "base_big": []}
    base = a.baseline_tree.resolve() if a.baseline_tree else None
    for r in range(a.repeats):
        # interleaved, so the others' load hits every measurement alike
        rounds["backbone"].append(run_backbone(streams, a.n))
        trees = [("", None)] + ([("base_", base)] if base else [])
        for prefix, tree in (trees if r % 2 == 0 else trees[::-1]):  # who goes first alternates
            for key, folder in (("small", small), ("control", control), ("big", big)):
                rounds[prefix + key].append(index_once(folder, stores / f"{prefix}{key}", tree))
        rounds["stages_small"].append(stages_in_process(small, 100))
        rounds["stages_big"].append(stages_in_process(big, 30))
        s, b = rounds["small"][-1], rounds["big"][-1]
        print(f"round {r + 1}: backbone {rounds['backbone'][-1]['images_per_s']:.1f} img/s, index {s['images_per_s']:.1f} "
              f"(small), {rounds['control'][-1]['images_per_s']:.1f} ({a.big} small), {b['images_per_s']:.1f} "
              f"(12 MP); load {os.getloadavg()[0]:.1f}", flush=True)
    res = {"machine": machine(), "n": a.n, "big": a.big, "repeats": a.repeats, "streams": streams,
           "batch": BATCH, "micro_batch": MICRO, "rounds": rounds}
    bb = median([x["images_per_s"] for x in rounds["backbone"]])
    res["backbone_median"] = bb
    for key in ("small", "control", "big") + (("base_small", "base_control", "base_big") if base else ()):
        runs = rounds[key]
        res[f"{key}_median"] = med(runs, "images_per_s")
        res[f"{key}_stages_median"] = {k: med_stage(runs, k) for k in
                                       ("process_start", "scan", "first_items", "wait", "embed", "write", "total")}
        res[f"{key}_wall_median"] = med(runs, "wall_s")
    res["ratio_small_to_backbone"] = res["small_median"] / bb
    res["round_ratios_small_to_backbone"] = [s["images_per_s"] / x["images_per_s"]
                                             for s, x in zip(rounds["small"], rounds["backbone"])]
    res["ratio_big_to_small"] = res["big_median"] / res["control_median"]
    res["round_ratios_big_to_small"] = [b["images_per_s"] / c["images_per_s"]
                                        for b, c in zip(rounds["big"], rounds["control"])]
    if base:
        res["baseline_tree"] = str(base)
        res["base_ratio_small_to_backbone"] = res["base_small_median"] / bb
        res["base_ratio_big_to_small"] = res["base_big_median"] / res["base_control_median"]
        res["speedup_small"] = res["small_median"] / res["base_small_median"]
        res["speedup_big"] = res["big_median"] / res["base_big_median"]
        print(f"baseline: index {res['base_small_median']:.1f} img/s = {res['base_ratio_small_to_backbone']:.2f} of the "
              f"backbone; 12 MP {res['base_ratio_big_to_small']:.2f} of small; speed-up {res['speedup_small']:.2f}x "
              f"(small), {res['speedup_big']:.2f}x (12 MP)")
    for key in ("stages_small", "stages_big"):
        res[f"{key}_median_ms"] = {k: median([x[k] for x in rounds[key]]) for k in rounds[key][0] if k != "loadavg"}
    res["loadavg_rounds"] = [x["loadavg_after"] for x in rounds["small"]]
    print(f"backbone alone {bb:.1f} img/s; index {res['small_median']:.1f} img/s = "
          f"{res['ratio_small_to_backbone']:.2f} of it (target >= 0.85); 12 MP {res['big_median']:.1f} img/s = "
          f"{res['ratio_big_to_small']:.2f} of small (target >= 0.6)")
    print("stages of index (s, medians):", json.dumps(res["small_stages_median"]))
    print("stages of index on 12 MP (s):", json.dumps(res["big_stages_median"]))
    print("read step, ms per image:", json.dumps(res["stages_small_median_ms"]), json.dumps(res["stages_big_median_ms"]))
    save(a.name, res)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
