"""Explain (issue 14): is the heatmap about the evidence, and how long does one take?

    python benchmarks/explain_quality.py [--dataset DIR] [--sample 100] [--seed 0] [--work DIR]
        [--timing 15] [--skip-vit]

Quality (deletion test, organizer/learn/explain_check.py) on caltech101-8 with efficientnet-lite0:
  1. index the dataset into WORK/store (reused when it is there), through the CLI;
  2. label every image by its folder name through the CLI (`organizer label ... --as NAME`),
     except a seeded sample of --sample images, which stay unlabeled so the maps are measured
     on images the classifier never trained on; `organizer train`;
  3. for every sampled image: blank the top 20% pixels of the predicted label's map and, as
     controls, 20% random pixels, a random region of the map's grid, and the top 20% of another
     (randomly chosen) label's map; report the mean fall of the predicted label's probability
     and the fraction of images where the map's fall beats each control by more than 0.001
     (`holds`), and where the control's beats the map's (`reversed`); the rest are ties. Both
     fills: blur and mean colour.

Speed, median seconds per explained image (one image at a time, no cache, the model warm):
  * efficientnet-lite0 through `Library.explain` (decode, Grad-CAM, full-size map), against
    `Library.embed_files` of the same image (decode and one forward pass on the indexing runtime);
  * ViT-B-32 (open_clip architecture, random weights: no hub here; speed does not depend on the
    weights) through Explainer.maps on one crop, against one forward pass of its tower.
The CLIP path with a small random checkpoint (ViT-S-32-alt) runs the deletion test once: only
that it runs and the map's shape are reported (random weights say nothing about quality).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common import DATASETS, ENV, WORK, machine, need, organizer, parse_index, run, save  # noqa: E402


def prepare(dataset: Path, work: Path, sample: int, seed: int) -> tuple[Path, list[str]]:
    store = work / "store"
    out = run(organizer("index", dataset, "--store", store, "--backbone", "efficientnet-lite0"))
    print("index:", parse_index(out["stdout"]))
    from organizer.library import Library

    lib = Library(store, create=False)
    paths = sorted(lib.store.primary_paths().values())
    lib.close()
    rng = np.random.default_rng(seed)
    held = sorted(paths[i] for i in rng.choice(len(paths), sample, replace=False))
    keep = sorted(set(paths) - set(held))
    by_class: dict[str, list[str]] = {}
    for p in keep:
        by_class.setdefault(p.split("/")[0], []).append(p)
    from organizer.store import Store

    s = Store(store, create=False)
    with s.transaction():
        s.db.execute("DELETE FROM labels")  # a rerun with another seed starts from no labels
    s.close()
    for name, members in by_class.items():
        for i in range(0, len(members), 500):  # argument lists of a sane length
            run(organizer("label", *members[i:i + 500], "--as", name, "--store", store))
    out = run(organizer("train", "--store", store, "--force"))
    print(out["stdout"].splitlines()[0], "|", out["stdout"].splitlines()[2])
    return store, held


def quality(store: Path, held: list[str], dataset: Path, seed: int) -> dict:
    from organizer.learn.model import load_model
    from organizer.ingest.decode import decode_image
    from organizer.learn.explain import Explainer
    from organizer.learn.explain_check import deletion_test
    from organizer.library import Library

    lib = Library(store, create=False)
    emb = lib.embedder()
    crops = np.stack([emb.preprocess.crop(decode_image((dataset / p).read_bytes(), min_side=256).image)
                      for p in held])
    explainer = Explainer(emb, load_model(lib.store))
    out = {}
    for fill in ("blur", "mean"):
        t = time.perf_counter()
        result, per = deletion_test(explainer, crops, fill=fill, seed=seed)
        right = [explainer.model.classes[c] == p.split("/")[0] for c, p in zip(per["pred"], held)]
        out[fill] = {**result.as_dict(), "seconds": round(time.perf_counter() - t, 1),
                     "predicted_right": round(float(np.mean(right)), 4)}
        print(fill, out[fill])
    lib.close()
    return out


def time_efficientnet(store: Path, held: list[str], dataset: Path, n: int) -> dict:
    from organizer.learn import explain as ex
    from organizer.library import Library

    lib = Library(store, create=False)
    files = [str(dataset / p) for p in held[:n + 1]]
    ex.explain(lib, files[0])  # warm: model, head, threads
    lib.embed_files(files[:1])
    explain_s, embed_s = [], []
    for f in files[1:]:  # interleaved, so load on the machine hits both alike
        t = time.perf_counter()
        e = ex.explain(lib, f, use_cache=False)
        explain_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        lib.embed_files([f])
        embed_s.append(time.perf_counter() - t)
    runtime = lib.embedder().runtime
    lib.close()
    m, b = statistics.median(explain_s), statistics.median(embed_s)
    return {"explain_median_s": round(m, 4), "embed_median_s": round(b, 4), "ratio": round(m / b, 2),
            "n": len(explain_s), "runtime_for_embedding": runtime, "map_shape": list(e.heatmap.shape)}


def clip_case(model_name: str, dataset: Path, held: list[str], n: int, work: Path, deletion: bool) -> dict:
    import open_clip
    import torch
    from safetensors.torch import save_file

    from organizer.learn.model import LinearModel
    from organizer.ingest.decode import decode_image
    from organizer.embed import get_embedder
    from organizer.learn.explain import Explainer
    from organizer.learn.explain_check import deletion_test

    path = work / f"{model_name}-random.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        model = open_clip.create_model(model_name, pretrained=None)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    emb = get_embedder(f"clip:{model_name}:{path}", quiet=True)
    rng = np.random.default_rng(0)
    head = LinearModel([f"c{i}" for i in range(8)], rng.normal(0, 1, (8, emb.dim)).astype(np.float32),
                       np.zeros(8, np.float32), emb.name, 0.0)
    explainer = Explainer(emb, head)
    crops = np.stack([emb.preprocess.crop(decode_image((dataset / p).read_bytes(), min_side=256).image)
                      for p in held[:n + 1]])
    explainer.maps(crops[:1], np.array([[0]]))  # warm
    emb.features(emb.preprocess.normalize(crops[:1]))
    maps_s, fwd_s = [], []
    for c in crops[1:]:
        t = time.perf_counter()
        maps, proba = explainer.maps(c[None], np.array([[0]]))
        maps_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        emb.features(emb.preprocess.normalize(c[None]))
        fwd_s.append(time.perf_counter() - t)
    m, b = statistics.median(maps_s), statistics.median(fwd_s)
    out = {"model": model_name, "method": explainer.method, "grid": list(maps.shape[-2:]),
           "explain_median_s": round(m, 4), "forward_median_s": round(b, 4), "ratio": round(m / b, 2),
           "runtime_for_forward": emb.runtime, "n": len(maps_s)}
    if deletion:
        result, _ = deletion_test(explainer, crops[:8])
        out["deletion_runs"] = bool(np.isfinite(result.drop_map)) and result.n == len(crops[:8])
    print(out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=DATASETS / "caltech101-8")
    ap.add_argument("--sample", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=WORK / "explain")
    ap.add_argument("--timing", type=int, default=15, help="images timed per backbone")
    ap.add_argument("--skip-vit", action="store_true")
    args = ap.parse_args()
    dataset = need(args.dataset)
    args.work.mkdir(parents=True, exist_ok=True)
    import os

    os.environ.update({k: v for k, v in ENV.items() if k in ("HF_HUB_OFFLINE", "ORGANIZER_USER_CACHE")})
    info = machine()
    store, held = prepare(dataset, args.work, args.sample, args.seed)
    result = {"machine": info, "dataset": str(dataset), "sample": args.sample, "seed": args.seed,
              "deletion": quality(store, held, dataset, args.seed),
              "speed_efficientnet": time_efficientnet(store, held, dataset, args.timing)}
    print("efficientnet-lite0 speed:", result["speed_efficientnet"])
    result["clip_small_random"] = clip_case("ViT-S-32-alt", dataset, held, 3, args.work, deletion=True)
    if not args.skip_vit:
        result["speed_vit_b_32"] = clip_case("ViT-B-32", dataset, held, args.timing, args.work, deletion=False)
    save("explain_quality", result)


if __name__ == "__main__":
    main()
