"""Search picks its index by library size: exact (flat) for small libraries, IVF with a
calibrated nprobe beyond; both agree with exact search, and the cached index follows the store."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from organizer import search
from organizer.store import Store
from organizer.store.vectors import write_shard


def clustered(n: int, dim: int, n_centers: int = 40, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres: the shape image embeddings have."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_centers, dim))
    x = centers[rng.integers(0, n_centers, n)] + spread * rng.normal(size=(n, dim))
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float16).astype(np.float32)  # what the store keeps, so "exact" is exact


def add_vectors(store: Store, X: np.ndarray, start: int = 0, shard_rows: int = 500) -> list[str]:
    """Record vectors the way the indexer does (shards, image rows, file rows), without images."""
    ids = []
    now = time.time()
    for lo in range(0, len(X), shard_rows):
        part = X[lo:lo + shard_rows]
        with store.transaction():
            shard = write_shard(store, part)
            rows = [(f"{start + lo + i:032x}", shard, i, now) for i in range(len(part))]
            store.db.executemany("INSERT INTO images(id, shard, shard_row, feature_norm, created_at) "
                                 "VALUES(?,?,?,1.0,?)", rows)
            store.db.executemany("INSERT INTO files(path, image_id, size, mtime_ns, status, last_seen) "
                                 "VALUES(?,?,0,0,'ok',?)", [(f"f/{r[0]}.jpg", r[0], now) for r in rows])
            store.bump_version()
        ids += [r[0] for r in rows]
    return ids


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store")
    s.set_meta("backbone", "test-backbone")
    s.set_meta("dim", "32")
    yield s
    search.forget(s)
    s.close()


def exact_top(X: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(Q @ X.T), axis=1, kind="stable")[:, :k]


def test_index_kind_follows_library_size():
    assert search.choose_kind(1_000, 512) == "flat"
    assert search.choose_kind(40_000, 512) == "flat"
    assert search.choose_kind(1_000_000, 512) == "ivf"
    assert search.choose_kind(40_000, 1280) == "ivf"
    assert 900 <= search.n_lists(1_000_000) <= 1100


def test_forced_ivf_agrees_with_exact_search(store, monkeypatch):
    X = clustered(4000, 32)
    ids = add_vectors(store, X)
    monkeypatch.setattr(search, "FLAT_MAX_CELLS", 0)  # a small library, indexed as a big one would be
    queries = X[::97]
    hits = search.query(store, queries, k=10)
    info = search.describe(search.load_index(store))
    assert info["kind"] == "ivf" and 1 <= info["nprobe"] <= info["nlist"]
    exact = exact_top(X, queries, 10)
    assert [h[0][0] for h in hits] == [ids[e[0]] for e in exact]  # the same top hit (the image itself)
    found = [[ids.index(i) for i, _ in h] for h in hits]
    assert search.recall_at_k(np.array(found), exact) >= 0.95
    # scores are cosines of the stored float16 vectors
    assert abs(hits[0][0][1] - 1.0) < 1e-2

    tuning = json.loads((store.root / (search.INDEX_NAME + ".json")).read_text())["tuning"]
    assert -1.0 <= tuning["widen_below"] <= 1.0
    # the calibrated nprobe survives the round trip through the index file
    search.forget(store)
    again = search.load_index(store, rebuild=False)
    assert again is not None and search.describe(again) == info


def test_flat_is_exact_and_excludes(store):
    X = clustered(600, 32, seed=1)
    ids = add_vectors(store, X)
    hits = search.query(store, X[:3], k=5, exclude={ids[0]})
    assert search.describe(search.load_index(store))["kind"] == "flat"
    assert ids[0] not in [i for i, _ in hits[0]] and len(hits[0]) == 5
    exact = exact_top(X, X[1:3], 5)
    assert [[i for i, _ in h] for h in hits[1:]] == [[ids[j] for j in row] for row in exact]


def test_index_in_memory_follows_new_vectors_and_damage(store):
    X = clustered(300, 32, seed=2)
    add_vectors(store, X)
    first = search.load_index(store)
    assert search.load_index(store) is first  # held in memory, not re-read and re-hashed
    Y = clustered(50, 32, seed=3, n_centers=2)
    new_ids = add_vectors(store, Y, start=10_000)
    assert search.query(store, Y[:1], k=1)[0][0][0] == new_ids[0]  # vectors_version moved: rebuilt
    assert search.load_index(store).ntotal == 350

    path = store.root / search.INDEX_NAME
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    search.forget(store)
    assert search.load_index(store, rebuild=False) is None  # checksum catches it
    assert search.load_index(store).ntotal == 350           # and it is rebuilt


def test_missing_files_leave_the_index(store):
    X = clustered(200, 32, seed=4)
    ids = add_vectors(store, X)
    with store.transaction():
        store.db.execute("UPDATE files SET status='missing' WHERE image_id=?", (ids[0],))
        store.bump_version()
    assert ids[0] not in [i for i, _ in search.query(store, X[:1], k=3)[0]]
