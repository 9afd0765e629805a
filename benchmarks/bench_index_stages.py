#!/usr/bin/env python3
"""Where `organizer index` spends its time, against the backbone alone, in one run (issue 17).

For the same photos, each round measures:
  backbone   the cached EfficientNet-Lite0 ONNX export on random tensors, run as indexing runs
             it (streams of one intra-op thread on one session, batch 32, micro-batches of 2),
             in its own process, timed inside;
  index      `organizer index` on a fresh store, the whole process, wall clock from here
             (process start and imports included), with the stages the indexer itself times
             ($ORGANIZER_PROFILE: scan, first decoded files, waiting for decoders, embedding,
             shard + SQLite writes) and process start = wall clock - the tool's own seconds;
  stages     CPU ms per image, in one process, the read step's parts: read, hash, decode (draft
             mode), crop (resize + centre crop), thumbnail encode, as the workers run them.
Photos: N caltech101-8 originals (about 300x200), and the first M of them upscaled to 12 MP
JPEGs (made once under $ORGANIZER_BENCH_DIR, never under ../shared) with the same M originals
as their control. Medians of --repeats rounds; every round's load average is recorded, since
the machine is shared.

With --clip MODEL, the same comparison for an open_clip model instead (issue 17's CLIP path): the
architecture built with random weights (seed 0) and saved to a local checkpoint under
$ORGANIZER_BENCH_DIR, loaded through `--backbone clip:MODEL:FILE`; backbone alone = its verified
ONNX export (fp32), run as indexing runs a transformer (streams of one thread, whole batches);
whole process = `organizer index` of the N photos on a fresh store holding that export already.

Usage: bench_index_stages.py [--n 300] [--big 100] [--repeats 3] [--name index-stages] [--clip ViT-B-32]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed import make_big  # noqa: E402
from common import (DATASETS, ENV, PY, ROOT, WORK, fresh_store, machine, median, need, organizer,  # noqa: E402
                    parse_index, run, save, subset)

BATCH = 32            # indexing's batch size (index_folder's default)
MICRO = 2             # TowerEmbedder.micro_batch for convnets


def onnx_file(folder: Path | None = None, pattern: str = "efficientnet-lite0-*fp32*.onnx") -> Path:
    """The verified export indexing uses (the benchmark's per-user cache, filled by a seed run)."""
    files = sorted((folder or Path(ENV["ORGANIZER_USER_CACHE"]) / "onnx").glob(pattern))
    if not files:
        sys.exit(f"no cached export {pattern}: run one `organizer index` first")
    return files[-1]


# -- the backbone alone (in its own process) -------------------------------------------------
def backbone_alone(path: str, streams: int, images: int, threads: int = 1, micro: int | None = MICRO) -> None:
    """streams threads on one session of `threads` intra-op threads, micro-batches of `micro`."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from organizer.embed.runtime import OnnxRunner

    runner = OnnxRunner(Path(path), threads=threads, micro_batch=micro)  # one session, as the indexer's streams share
    runners = [runner] * streams
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(BATCH, 3, 224, 224)).astype(np.float32) for _ in range(streams)]
    runner(batches[0][:micro or BATCH])  # the first call allocates
    n_batches = max(streams, images // BATCH)
    t, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(lambda i: runners[i % streams](batches[i % streams]), range(n_batches)))
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    n = n_batches * BATCH
    print(json.dumps({"images": n, "seconds": dt, "images_per_s": n / dt, "cpu_ms_per_image": 1000 * cpu / n}))


def run_backbone(streams: int, images: int, threads: int = 1, micro: int = MICRO, onnx: Path | None = None) -> dict:
    res = run([PY, Path(__file__).resolve(), "--backbone-alone", onnx or onnx_file(), str(streams), str(images),
               str(threads), str(micro)])
    out = json.loads(res["stdout"].strip().splitlines()[-1])
    out["loadavg"] = res["loadavg"]
    return out


# -- the whole process -----------------------------------------------------------------------
def index_once(folder: Path, store: Path, tree: Path | None = None, backbone: str = "efficientnet-lite0",
               onnx_from: Path | None = None) -> dict:
    """tree: run the organizer package of that source tree (the baseline) instead of this one."""
    fresh_store(store, onnx_from)
    profile = store.parent / (store.name + ".profile.json")
    profile.unlink(missing_ok=True)
    load_before = os.getloadavg()[0]
    # -P: `python -m` would put the working directory (this tree) ahead of PYTHONPATH
    cmd = [PY, "-P", "-m", "organizer.cli", "index", folder, "--store", store, "--backbone", backbone]
    res = run(cmd, env={**ENV, "ORGANIZER_PROFILE": str(profile), "PYTHONPATH": str(tree or ROOT)})
    info = parse_index(res["stdout"])
    stages = json.loads(profile.read_text()) if profile.exists() else {}
    stages["process_start"] = res["wall_s"] - info["seconds"]
    return {"wall_s": res["wall_s"], "cpu_s": res["cpu_s"], "embedded": info["embedded"],
            "cpu_ms_per_image": 1000 * res["cpu_s"] / max(1, info["embedded"]),
            "images_per_s": info["embedded"] / res["wall_s"], "runtime": info["runtime"],
            "loadavg_before": load_before, "loadavg_after": res["loadavg"], "stages": stages}


# -- the read step's parts, per image ----------------------------------------------------------
def read_stages(folder: Path, limit: int) -> dict:
    from organizer.embed import Preprocess
    from organizer.ingest.decode import decode_image, make_thumbnail
    from organizer.ingest.indexer import scan
    from organizer.store import content_hash

    clock = time.process_time  # CPU seconds: what a shared machine's load does not inflate much
    t = clock()
    rels = [r for r, _, _ in scan(folder)]
    walk = clock() - t
    pre, thumb_size = Preprocess(224), 256
    totals = dict.fromkeys(("read", "hash", "decode", "crop", "thumb"), 0.0)
    for rel in rels[:limit]:
        t0 = clock()
        data = (folder / rel).read_bytes()
        t1 = clock()
        content_hash(data)
        t2 = clock()
        decoded = decode_image(data, name=rel, min_side=max(pre.size, thumb_size))
        t3 = clock()
        pre.crop(decoded.image)
        t4 = clock()
        make_thumbnail(decoded.image, thumb_size)
        t5 = clock()
        for k, a, b in (("read", t0, t1), ("hash", t1, t2), ("decode", t2, t3), ("crop", t3, t4), ("thumb", t4, t5)):
            totals[k] += b - a
    n = min(limit, len(rels))
    out = {k: 1000 * v / n for k, v in totals.items()}
    out["walk_per_file"] = 1000 * walk / max(1, len(rels))
    out["total"] = sum(out[k] for k in ("read", "hash", "decode", "crop", "thumb"))
    return out  # CPU milliseconds per image


def stages_in_process(folder: Path, limit: int) -> dict:
    res = run([PY, Path(__file__).resolve(), "--read-stages", folder, str(limit)])
    out = json.loads(res["stdout"].strip().splitlines()[-1])
    out["loadavg"] = res["loadavg"]
    return out


# -- the CLIP path ---------------------------------------------------------------------------
def clip_checkpoint(model: str) -> Path:
    """`model` with random weights (seed 0), saved once as safetensors (no hub here)."""
    path = WORK / f"clip-{model}-random.safetensors"
    if not path.exists():
        import open_clip
        import torch
        from safetensors.torch import save_file

        torch.manual_seed(0)
        weights = open_clip.create_model(model, pretrained=None).state_dict()
        save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    return path


def clip_rounds(model: str, folder: Path, repeats: int, streams: int, base: Path | None = None) -> dict:
    spec = f"clip:{model}:{clip_checkpoint(model)}"
    stores = WORK / "stores" / "stages-clip"
    seed = stores / "seed"
    index_once(folder, seed, backbone=spec)  # makes and verifies the export, kept in that store's cache
    onnx = onnx_file(seed / "cache" / "onnx", "*fp32*.onnx")
    n = sum(1 for _ in folder.rglob("*.jpg"))
    rounds = {"backbone": [], "index": [], "base_index": []}
    for r in range(repeats):
        # a transformer runs whole batches (TowerEmbedder.micro_batch), streams of one thread
        rounds["backbone"].append(run_backbone(streams, n, micro=0, onnx=onnx))
        trees = [("", None)] + ([("base_", base)] if base else [])
        for prefix, tree in (trees if r % 2 == 0 else trees[::-1]):
            rounds[prefix + "index"].append(index_once(folder, stores / f"{prefix}index", tree, spec, onnx_from=seed))
        print(f"clip round {r + 1}: backbone {rounds['backbone'][-1]['images_per_s']:.1f} img/s, index "
              f"{rounds['index'][-1]['images_per_s']:.1f}; load {os.getloadavg()[0]:.1f}", flush=True)
    bb, ix = (median([x["images_per_s"] for x in rounds[k]]) for k in ("backbone", "index"))
    bb_cpu, ix_cpu = (median([x["cpu_ms_per_image"] for x in rounds[k]]) for k in ("backbone", "index"))
    res = {"model": model, "images": n, "onnx": onnx.name, "rounds": rounds, "backbone_median": bb, "index_median": ix,
           "ratio_index_to_backbone": ix / bb, "round_ratios": [i["images_per_s"] / b["images_per_s"] for i, b in
                                                                 zip(rounds["index"], rounds["backbone"])],
           "backbone_cpu_ms_per_image": bb_cpu, "index_cpu_ms_per_image": ix_cpu, "cpu_ratio": bb_cpu / ix_cpu,
           "runtime": rounds["index"][-1]["runtime"]}
    if base:
        res.update(baseline_tree=str(base), base_index_median=median([x["images_per_s"] for x in rounds["base_index"]]),
                   base_index_cpu_ms_per_image=median([x["cpu_ms_per_image"] for x in rounds["base_index"]]))
        print(f"baseline: index {res['base_index_median']:.1f} img/s, CPU {res['base_index_cpu_ms_per_image']:.1f} ms "
              "per image")
    print(f"CLIP {model} ({res['runtime']}): backbone alone {bb:.1f} img/s, index {ix:.1f} img/s = {ix / bb:.2f} of "
          f"it; CPU per image {bb_cpu:.1f} ms against {ix_cpu:.1f} ({bb_cpu / ix_cpu:.2f})")
    return res


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
    ap.add_argument("--clip", metavar="MODEL", help="measure this open_clip architecture (random weights) instead")
    ap.add_argument("--backbone-alone", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--read-stages", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.backbone_alone:
        path, streams, images, threads, micro = a.backbone_alone
        return backbone_alone(path, int(streams), int(images), int(threads), int(micro) or None)
    if a.read_stages:
        print(json.dumps(read_stages(Path(a.read_stages[0]), int(a.read_stages[1]))))
        return

    from organizer.ingest.indexer import default_workers, inference_streams

    streams = inference_streams(default_workers())
    caltech = need(DATASETS / "caltech101-8")
    small = subset(caltech, WORK / f"small-{a.n}", a.n, stride=max(1, 2463 // a.n))
    control = subset(small, WORK / f"small-{a.n}-first-{a.big}", a.big)
    base = a.baseline_tree.resolve() if a.baseline_tree else None
    if a.clip:
        return save(a.name, {"machine": machine(), **clip_rounds(a.clip, control, a.repeats, streams, base)})
    print(f"making {a.big} 12-megapixel JPEGs (once)", flush=True)
    big = make_big(control, WORK / f"big12mp-from-{a.n}-{a.big}", a.big)
    stores = WORK / "stores" / "stages"
    index_once(control, stores / "seed")  # fills the per-user cache with the export: steady state after
    rounds = {"backbone": [], "backbone_issue": [], "noop": [], "small": [], "control": [], "big": [], "stages_small": [], "stages_big": [],
              "base_small": [], "base_control": [], "base_big": []}
    for r in range(a.repeats):
        # interleaved, so the others' load hits every measurement alike
        rounds["backbone"].append(run_backbone(streams, a.n))
        # the issue's own yardstick: one session of 2 intra-op threads on whole batches of 32
        rounds["backbone_issue"].append(run_backbone(1, a.n, threads=2, micro=0))
        trees = [("", None)] + ([("base_", base)] if base else [])
        for prefix, tree in (trees if r % 2 == 0 else trees[::-1]):  # who goes first alternates
            for key, folder in (("small", small), ("control", control), ("big", big)):
                rounds[prefix + key].append(index_once(folder, stores / f"{prefix}{key}", tree))
        rounds["stages_small"].append(stages_in_process(small, 100))
        rounds["stages_big"].append(stages_in_process(big, 30))
        # process start and the fixed costs of a command: the same library again, nothing to embed
        t = run(organizer("index", small, "--store", stores / "small", "--backbone", "efficientnet-lite0"))
        rounds["noop"].append({"wall_s": t["wall_s"], "cpu_s": t["cpu_s"], "loadavg": t["loadavg"]})
        s, b = rounds["small"][-1], rounds["big"][-1]
        print(f"round {r + 1}: backbone {rounds['backbone'][-1]['images_per_s']:.1f} img/s, index {s['images_per_s']:.1f} "
              f"(small), {rounds['control'][-1]['images_per_s']:.1f} ({a.big} small), {b['images_per_s']:.1f} "
              f"(12 MP); load {os.getloadavg()[0]:.1f}", flush=True)
    res = {"machine": machine(), "n": a.n, "big": a.big, "repeats": a.repeats, "streams": streams,
           "batch": BATCH, "micro_batch": MICRO, "rounds": rounds}
    bb = median([x["images_per_s"] for x in rounds["backbone"]])
    res["backbone_median"] = bb
    res["backbone_issue_median"] = median([x["images_per_s"] for x in rounds["backbone_issue"]])
    res["backbone_issue_cpu_ms_per_image"] = median([x["cpu_ms_per_image"] for x in rounds["backbone_issue"]])
    res["noop_wall_median"] = median([x["wall_s"] for x in rounds["noop"]])
    res["noop_cpu_median"] = median([x["cpu_s"] for x in rounds["noop"]])
    for key in ("small", "control", "big") + (("base_small", "base_control", "base_big") if base else ()):
        runs = rounds[key]
        res[f"{key}_median"] = med(runs, "images_per_s")
        res[f"{key}_stages_median"] = {k: med_stage(runs, k) for k in
                                       ("process_start", "scan", "first_items", "wait", "embed", "write", "total")}
        res[f"{key}_wall_median"] = med(runs, "wall_s")
    # CPU time per image is what a quiet machine turns into speed (both cores busy): the ratio of
    # the backbone's to the whole process's says how close indexing can get, whatever the load.
    bb_cpu = median([x["cpu_ms_per_image"] for x in rounds["backbone"]])
    res["backbone_cpu_ms_per_image"] = bb_cpu
    for key in ("small", "control", "big") + (("base_small", "base_control", "base_big") if base else ()):
        res[f"{key}_cpu_ms_per_image"] = med(rounds[key], "cpu_ms_per_image")
        res[f"{key}_cpu_ratio_to_backbone"] = bb_cpu / res[f"{key}_cpu_ms_per_image"]
    res["ratio_small_to_backbone"] = res["small_median"] / bb
    res["ratio_small_to_backbone_issue"] = res["small_median"] / res["backbone_issue_median"]
    res["round_ratios_small_to_backbone"] = [s["images_per_s"] / x["images_per_s"]
                                             for s, x in zip(rounds["small"], rounds["backbone"])]
    res["ratio_big_to_small"] = res["big_median"] / res["control_median"]
    res["round_ratios_big_to_small"] = [b["images_per_s"] / c["images_per_s"]
                                        for b, c in zip(rounds["big"], rounds["control"])]
    if base:
        res["baseline_tree"] = str(base)
        res["base_ratio_small_to_backbone"] = res["base_small_median"] / bb
        res["base_ratio_small_to_backbone_issue"] = res["base_small_median"] / res["backbone_issue_median"]
        res["base_ratio_big_to_small"] = res["base_big_median"] / res["base_control_median"]
        res["speedup_small"] = res["small_median"] / res["base_small_median"]
        res["speedup_big"] = res["big_median"] / res["base_big_median"]
        print(f"baseline: index {res['base_small_median']:.1f} img/s = {res['base_ratio_small_to_backbone']:.2f} of the "
              f"backbone; 12 MP {res['base_ratio_big_to_small']:.2f} of small; speed-up {res['speedup_small']:.2f}x "
              f"(small), {res['speedup_big']:.2f}x (12 MP)")
    for key in ("stages_small", "stages_big"):
        res[f"{key}_median_ms"] = {k: median([x[k] for x in rounds[key]]) for k in rounds[key][0] if k != "loadavg"}
    res["loadavg_rounds"] = [x["loadavg_after"] for x in rounds["small"]]
    print(f"backbone as the issue measured it (1 session, 2 threads, batch 32): {res['backbone_issue_median']:.1f} img/s; "
          f"index/that = {res['ratio_small_to_backbone_issue']:.2f}; no-op index {res['noop_wall_median']:.2f} s")
    print(f"backbone alone {bb:.1f} img/s; index {res['small_median']:.1f} img/s = "
          f"{res['ratio_small_to_backbone']:.2f} of it (target >= 0.85); 12 MP {res['big_median']:.1f} img/s = "
          f"{res['ratio_big_to_small']:.2f} of small (target >= 0.6)")
    print(f"CPU per image: backbone {bb_cpu:.1f} ms, index {res['small_cpu_ms_per_image']:.1f} (small), "
          f"{res['big_cpu_ms_per_image']:.1f} (12 MP): backbone/index = {res['small_cpu_ratio_to_backbone']:.2f}"
          + (f" (baseline {res['base_small_cpu_ratio_to_backbone']:.2f})" if base else ""))
    print("stages of index (s, medians):", json.dumps(res["small_stages_median"]))
    print("stages of index on 12 MP (s):", json.dumps(res["big_stages_median"]))
    print("read step, ms per image:", json.dumps(res["stages_small_median_ms"]), json.dumps(res["stages_big_median_ms"]))
    save(a.name, res)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
