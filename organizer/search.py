"""Nearest-neighbour search with FAISS over image vectors (inner product = cosine).

The index file is a cache: it carries the store's vectors_version and a checksum, and is
rebuilt from the store whenever it is missing, stale or damaged."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .store import Store

INDEX_NAME = "index.faiss"


def _paths(store: Store):
    return store.root / INDEX_NAME, store.root / (INDEX_NAME + ".json")


def build_index(store: Store):
    import faiss

    from .vectors import load_vectors

    ids, X = load_vectors(store)
    rowids = _rowids(store, ids)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(X.shape[1] if X.size else int(store.get_meta("dim") or 1)))
    if len(ids):
        index.add_with_ids(X, rowids)
    return index


def _rowids(store: Store, ids: list[str]) -> np.ndarray:
    lookup = {r[0]: r[1] for r in store.db.execute("SELECT id, rowid FROM images")}
    return np.array([lookup[i] for i in ids], dtype=np.int64)


def save_index(store: Store, index) -> None:
    import faiss

    path, meta = _paths(store)
    data = faiss.serialize_index(index).tobytes()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    meta.write_text(json.dumps({"vectors_version": store.vectors_version, "backbone": store.backbone,
                                "ntotal": int(index.ntotal), "sha256": hashlib.sha256(data).hexdigest()}))


def load_index(store: Store, *, rebuild: bool = True):
    """The saved index if it is intact and current, else a fresh one built from the store."""
    import faiss

    path, meta = _paths(store)
    try:
        info = json.loads(meta.read_text())
        data = path.read_bytes()
        if (info["vectors_version"] == store.vectors_version and info["backbone"] == store.backbone
                and hashlib.sha256(data).hexdigest() == info["sha256"]):
            return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except (OSError, ValueError, KeyError, RuntimeError):
        pass  # missing or damaged cache: rebuild below
    if not rebuild:
        return None
    index = build_index(store)
    save_index(store, index)
    return index


def query(store: Store, vectors: np.ndarray, k: int = 10, *, exclude: set[str] | None = None
          ) -> list[list[tuple[str, float]]]:
    """For each query vector, up to k (image_id, score) pairs, best first."""
    index = load_index(store)
    if index.ntotal == 0:
        return [[] for _ in range(len(vectors))]
    extra = len(exclude or ())
    scores, rowids = index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k + extra, index.ntotal))
    by_rowid = {}
    wanted = {int(r) for r in rowids.ravel() if r >= 0}
    if wanted:
        q = f"SELECT rowid, id FROM images WHERE rowid IN ({','.join('?' * len(wanted))})"
        by_rowid = {r[0]: r[1] for r in store.db.execute(q, list(wanted))}
    out = []
    for srow, rrow in zip(scores, rowids):
        hits = [(by_rowid[int(r)], float(s)) for s, r in zip(srow, rrow)
                if r >= 0 and by_rowid.get(int(r)) not in (exclude or ())]
        out.append(hits[:k])
    return out
