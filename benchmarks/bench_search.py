#!/usr/bin/env python3
"""Search at scale: `similar`/`search` over 1,000,000 vectors (target: median query < 20 ms with
recall@10 >= 0.95 against exact search).

The vectors are synthetic but structured like image embeddings (unit vectors around 100,000
centres, ten images each on average, that themselves group under 100 themes; a point's
nearest neighbour has cosine ~0.5, so neighbourhoods are diffuse rather than tight clusters), written into a real store through the same
shard/row layout the indexer uses, so `organizer.search` runs exactly as it does for a user.
Queries: 200 stored vectors (what `similar` does) and 200 new vectors from the same
distribution (a new photo or text query). Exact answers come from a brute-force scan.

Reported: index build time (k-means training, adding, nprobe calibration, save), load time
from disk, median and p95 latency of `search.query(store, q, k=10)` (FAISS search plus the
SQLite lookup of image ids), recall@10, and a flat (exact) FAISS index's latency for scale.

Usage: bench_search.py [--quick] [--n N] [--dim D]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WORK, machine, median, save  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from organizer import search  # noqa: E402
from organizer.store import Store  # noqa: E402
from organizer.store.vectors import write_shard  # noqa: E402

SHARD_ROWS = 4096


def mixture(n: int, dim: int, seed: int, noise_seed: int | None = None, themes: int = 100, centres: int = 100_000):
    """Generator of (n_chunk, dim) float32 unit vectors. `seed` fixes the themes and centres,
    `noise_seed` (default: seed) the samples drawn around them."""
    rng = np.random.default_rng(seed)
    theme = rng.normal(size=(themes, dim)).astype(np.float32)
    centre = theme[rng.integers(0, themes, centres)] + 0.8 * rng.normal(size=(centres, dim)).astype(np.float32)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    rng = rng if noise_seed is None else np.random.default_rng(noise_seed)
    done = 0
    while done < n:
        m = min(SHARD_ROWS * 8, n - done)
        x = centre[rng.integers(0, centres, m)] + (1.0 / np.sqrt(dim)) * rng.normal(size=(m, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x.astype(np.float16).astype(np.float32)
        done += m


def build_store(root: Path, n: int, dim: int) -> Store:
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == f"{n}:{dim}":
        return Store(root)
    shutil.rmtree(root, ignore_errors=True)
    store = Store(root)
    store.set_meta("backbone", f"synthetic-{dim}")
    store.set_meta("dim", str(dim))
    t = time.time()
    now = time.time()
    row = 0
    for chunk in mixture(n, dim, seed=0):
        for lo in range(0, len(chunk), SHARD_ROWS):
            part = chunk[lo:lo + SHARD_ROWS]
            with store.transaction():
                shard = write_shard(store, part)
                ids = [f"{row + i:032x}" for i in range(len(part))]
                store.db.executemany("INSERT INTO images(id, shard, shard_row, feature_norm, created_at) "
                                     "VALUES(?,?,?,1.0,?)", [(h, shard, i, now) for i, h in enumerate(ids)])
                store.db.executemany("INSERT INTO files(path, image_id, size, mtime_ns, status, last_seen) "
                                     "VALUES(?,?,0,0,'ok',?)", [(f"p/{h}.jpg", h, now) for h in ids])
            row += len(part)
    store.bump_version()
    marker.write_text(f"{n}:{dim}")
    print(f"built a {n} x {dim} store in {time.time() - t:.0f}s", flush=True)
    return store


def exact_topk(store: Store, Q: np.ndarray, k: int) -> np.ndarray:
    from organizer.store.vectors import iter_present_vectors

    best_s = np.full((len(Q), k), -np.inf, np.float32)
    best_i = np.full((len(Q), k), -1, np.int64)
    for rowids, X in iter_present_vectors(store):
        best_s, best_i = search._merge_topk(best_s, best_i, Q @ X.T, rowids, k)
    return best_i


def timed_queries(store: Store, Q: np.ndarray, k: int):
    lookup_rowid = {}
    latencies, found = [], []
    for q in Q:
        t = time.perf_counter()
        hits = search.query(store, q[None], k)[0]
        latencies.append(time.perf_counter() - t)
        found.append([h[0] for h in hits])
    ids = {i for f in found for i in f}
    qmarks = ",".join("?" * len(ids))
    lookup_rowid = dict(store.db.execute(f"SELECT id, rowid FROM images WHERE id IN ({qmarks})", list(ids)))
    found_rowids = np.array([[lookup_rowid[i] for i in f] + [-1] * (k - len(f)) for f in found])
    return np.array(latencies) * 1000, found_rowids


def flat_latency(store: Store, Q: np.ndarray, k: int, dim: int) -> float:
    import faiss

    from organizer.store.vectors import iter_present_vectors

    index = faiss.IndexFlatIP(dim)
    for _, X in iter_present_vectors(store):
        index.add(X)
    faiss.omp_set_num_threads(1)
    times = []
    for q in Q[:20]:
        t = time.perf_counter()
        index.search(q[None], k)
        times.append(time.perf_counter() - t)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return 1000 * float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100,000 vectors")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    n = a.n or (100_000 if a.quick else 1_000_000)
    store = build_store(WORK / f"search-{n}-{a.dim}", n, a.dim)
    for p in (store.root / search.INDEX_NAME, store.root / (search.INDEX_NAME + ".json")):
        p.unlink(missing_ok=True)  # measure a build from scratch

    t = time.perf_counter()
    index = search.load_index(store)
    build_s = time.perf_counter() - t
    info = search.describe(index)
    size_mb = (store.root / search.INDEX_NAME).stat().st_size / 2**20
    search.forget(store)
    del index
    t = time.perf_counter()
    search.load_index(store)
    load_s = time.perf_counter() - t
    print(f"index {info}: built in {build_s:.1f}s, {size_mb:.0f} MiB, loaded in {load_s:.1f}s", flush=True)

    rng = np.random.default_rng(7)
    rows = np.sort(rng.choice(n, 200, replace=False))
    from organizer.store.vectors import load_vectors

    stored_ids = [f"{r:032x}" for r in rows]
    _, Q_stored = load_vectors(store, stored_ids)
    Q_fresh = next(mixture(200, a.dim, seed=0, noise_seed=99))       # new photos of known subjects
    Q_unrelated = next(mixture(200, a.dim, seed=99))                # subjects the library does not hold
    result = {"machine": machine(), "n": n, "dim": a.dim, "k": a.k, "index": info, "build_s": build_s,
              "load_s": load_s, "index_mib": size_mb}
    for name, Q in (("stored", Q_stored), ("fresh", Q_fresh), ("unrelated", Q_unrelated)):
        lat, found = timed_queries(store, Q, a.k)
        exact = exact_topk(store, Q, a.k)
        rec = search.recall_at_k(found, exact)
        result[name] = {"median_ms": float(np.median(lat)), "p95_ms": float(np.percentile(lat, 95)),
                        "recall_at_10": rec, "queries": len(Q)}
        print(f"{name} queries: median {np.median(lat):.2f} ms, p95 {np.percentile(lat, 95):.2f} ms, "
              f"recall@{a.k} {rec:.3f}", flush=True)
    result["flat_median_ms"] = flat_latency(store, Q_stored, a.k, a.dim)
    print(f"flat (exact) FAISS single-query latency for comparison: {result['flat_median_ms']:.1f} ms", flush=True)
    save(f"search-{n}-{a.dim}", result)


if __name__ == "__main__":
    main()
