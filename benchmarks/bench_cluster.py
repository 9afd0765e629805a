"""Clustering at scale: time and peak memory of `organizer cluster`'s computation, n -> (s, GB).

    python benchmarks/bench_cluster.py [--sizes 10000,100000,1000000] [--dim 1280]
        [--real X.npy y.npy] [--json OUT] [--quick]

Each size runs in a fresh child process, so its peak RSS (ru_maxrss) is that size's alone.
What is timed is what `organizer cluster` computes: cluster_vectors (UMAP fit on a sample,
placement of the other rows, HDBSCAN, remainder placement) plus the naming suggestions
(ImageNet head over every vector). Loading vectors and writing cluster_members rows to
SQLite are left out (I/O; about 1 s per 100k rows here).

Data (the vectors a real library would give, at any n):
- default, a Gaussian mixture with photo-like geometry: 40 groups in a 32-d latent space
  (centres ~N(0, I), points = centre + N(0, 1.3^2 I); 10-NN group agreement ~0.78, between
  cifar10-test's real EfficientNet vectors (0.57) and caltech101-8's), sized by a Zipf-like law (largest ~6x
  the smallest), mapped into --dim dimensions by a random orthonormal map, small ambient
  noise, L2-normalized; 3% clutter with no centre. (Isotropic noise in 1280-d is a poor
  stand-in: every point is nearly equidistant from every other, which no photo set is, and
  UMAP's graph then costs minutes even at 10k.)
- --real X.npy y.npy: real embeddings (e.g. EfficientNet-Lite0 vectors of cifar10-test)
  repeated to n rows, each copy moved by a Gaussian step of 0.7x the median distance to a
  nearest other photo, so copies behave like new photos of the same kinds.
Quality: NMI of the labels against the generating groups (noise rows as singletons, as
simulate_user scores), so a speed-up that breaks the clustering shows.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mixture(n: int, dim: int, seed: int = 0, groups: int = 40, latent: int = 32, spread: float = 1.3):
    """Photo-like vectors: a Gaussian mixture in a `latent`-dimensional space (embeddings of
    photos have low intrinsic dimension), mapped into `dim` dimensions by a random orthonormal
    map, plus a little ambient noise, L2-normalized."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, latent)).astype(np.float32)
    basis = np.linalg.qr(rng.standard_normal((dim, latent)))[0].T.astype(np.float32)  # latent x dim
    weights = 1.0 / (np.arange(groups) + 8.0)
    weights /= weights.sum()
    n_clutter = int(0.03 * n)
    truth = np.concatenate([rng.choice(groups, size=n - n_clutter, p=weights), np.full(n_clutter, -1)])
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):  # chunks: no n x dim temporaries
        t = truth[start:start + 65536]
        z = rng.standard_normal((len(t), latent), dtype=np.float32) * spread * np.sqrt(2)
        z[t >= 0] = z[t >= 0] / np.sqrt(2) + centres[t[t >= 0]]  # clutter: spread-out, no centre
        block = z @ basis + rng.standard_normal((len(t), dim), dtype=np.float32) * (0.3 / np.sqrt(dim))
        X[start:start + len(t)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return X, truth


def replicated(n: int, X0, y0, seed: int = 0):
    """n rows from real vectors: each a real vector moved by a random step as long as a typical
    distance to its nearest other photo, so copies look like new photos of the same kind
    rather than near-identical ones (which would form micro-clusters of their own)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    probe = X0[rng.choice(len(X0), size=min(2000, len(X0)), replace=False)]
    sims = probe @ X0.T
    sims[sims > 0.99999] = -1  # the probe itself
    nn_dist = float(np.median(np.sqrt(np.maximum(0, 2 - 2 * sims.max(axis=1)))))
    step = 0.7 * nn_dist / np.sqrt(X0.shape[1])
    rows = np.arange(n) % len(X0)
    X = np.empty((n, X0.shape[1]), dtype=np.float32)
    for start in range(0, n, 65536):
        r = rows[start:start + 65536]
        block = X0[r] + rng.standard_normal((len(r), X0.shape[1]), dtype=np.float32) * step
        X[start:start + len(r)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return X, y0[rows]


def child(n: int, dim: int, real: list[str] | None) -> dict:
    """One size, in this process: generate, cluster, suggest names; report time and RSS."""
    import numpy as np
    from sklearn.metrics import normalized_mutual_info_score

    from organizer.discover.cluster import cluster_vectors
    from organizer.embed.efficientnet import EfficientNetLite0
    from organizer.discover.naming import suggest

    if real:
        X0 = np.load(real[0]).astype(np.float32)
        y0 = np.unique(np.load(real[1]), return_inverse=True)[1]
        X, truth = replicated(n, X0, y0)
    else:
        X, truth = mixture(n, dim)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    started = time.perf_counter()
    result = cluster_vectors(X, seed=0)
    cluster_s = time.perf_counter() - started
    naming_s = None
    if X.shape[1] == 1280:  # the ImageNet head only fits EfficientNet-Lite0 vectors
        started = time.perf_counter()
        suggest(EfficientNetLite0(), X, np.ones(n, np.float32), result.labels)
        naming_s = time.perf_counter() - started
    labels = result.labels
    singletons = np.where(labels >= 0, labels, -2 - np.arange(n))
    truth_s = np.where(truth >= 0, truth, -2 - np.arange(n) - n)
    return {"n": n, "dim": int(X.shape[1]), "data": "real+jitter" if real else "mixture",
            "cluster_s": round(cluster_s, 1), "naming_s": None if naming_s is None else round(naming_s, 1),
            "total_s": round(cluster_s + (naming_s or 0), 1),
            "stages_s": result.params.get("timings_s"),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "data_rss_gb": round(rss_data, 2),
            "clusters": result.n_clusters, "unsorted": round(float((labels < 0).mean()), 4),
            "selection": result.params.get("selection_used"),
            "nmi": round(float(normalized_mutual_info_score(truth_s, singletons)), 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--real", nargs=2, metavar=("X", "Y"))
    ap.add_argument("--json", help="results file (default benchmarks/results/cluster[-quick].json)")
    ap.add_argument("--quick", action="store_true", help="sizes 10000,100000")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.quick and a.sizes == ap.get_default("sizes"):
        a.sizes = "10000,100000"
    a.json = a.json or str(ROOT / "benchmarks" / "results" / f"cluster{'-quick' if a.quick else ''}.json")
    if a.child:
        print(json.dumps(child(a.child, a.dim, a.real)))
        return
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        cmd = [sys.executable, __file__, "--child", str(n), "--dim", str(a.dim)] + (["--real", *a.real] if a.real else [])
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if p.returncode:
            print(f"n={n}: failed ({p.returncode})\n{p.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(p.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| n | data | total s | cluster s (stages) | naming s | peak RSS GB | clusters | unsorted | NMI |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        stages = ", ".join(f"{k} {v}" for k, v in (r["stages_s"] or {}).items())
        print(f"| {r['n']:,} | {r['data']} {r['dim']}-d | {r['total_s']} | {r['cluster_s']} ({stages}) | "
              f"{r['naming_s']} | {r['peak_rss_gb']} | {r['clusters']} | {r['unsorted']} | {r['nmi']} |")
    targets = {100_000: (180, 4), 1_000_000: (1200, 12)}
    summary = [f"5. cluster {r['n']:,} ({r['data']}): {r['total_s']:.0f} s, peak {r['peak_rss_gb']:.1f} GB, "
               f"NMI {r['nmi']}" + (f" (target < {targets[r['n']][0]} s, < {targets[r['n']][1]} GB)"
                                     if r["n"] in targets else "") for r in rows]
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    if len(rows) < len(a.sizes.split(",")):
        sys.exit(1)

if __name__ == "__main__":
    main()
