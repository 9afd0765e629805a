"""Nearest-neighbour search with FAISS over image vectors (inner product = cosine).

The index type follows the library's size. Up to FLAT_MAX_CELLS (vectors x dimensions) an
exact flat index answers a query in a few milliseconds. Beyond that a flat scan is memory-bound
(about 250 ms for 1M x 512 on one core), so an inverted-file index (IVF) scans only the lists
nearest to the query. Its vectors are stored as float16, which loses nothing because the
store's vectors are float16 already. After building, `nprobe` is calibrated: stored vectors are
queried against exact search and the smallest nprobe whose recall@10 reaches TARGET_RECALL is
kept, so recall is measured rather than hoped for.

The index file is a cache: it carries the store's vectors_version and a checksum, and is
rebuilt from the store whenever it is missing, stale or damaged. A loaded index stays in
memory for the process (the app queries many times) until the store's vectors change.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading

import numpy as np

from organizer.store import Store, replace_file

INDEX_NAME = "index.faiss"
FLAT_MAX_CELLS = 25_000_000       # vectors x dim: 50k x 512 or 20k x 1280 stay exact
TARGET_RECALL = 0.97              # recall@10 against exact search that calibration must reach
CALIBRATION_QUERIES = 200
CALIBRATION_K = 10
TRAIN_PER_LIST = 64               # k-means training points per inverted list (FAISS wants >= 39)
SEED = 1234

WIDEN = 8                         # nprobe factor for a query unlike anything calibration saw
_LOADED: dict[str, tuple[tuple, object, dict]] = {}
_LOCK = threading.Lock()


def _paths(store: Store):
    return store.root / INDEX_NAME, store.root / (INDEX_NAME + ".json")


def choose_kind(n: int, dim: int) -> str:
    return "flat" if n * max(dim, 1) <= FLAT_MAX_CELLS else "ivf"


def n_lists(n: int) -> int:
    """About sqrt(n) lists: training and assignment stay within seconds on two cores."""
    return int(min(16384, max(16, round(math.sqrt(n)))))


def build_index(store: Store, *, kind: str | None = None):
    """A fresh index over every present image, streamed shard by shard."""
    return _build(store, kind)[0]


def _build(store: Store, kind: str | None = None) -> tuple[object, dict]:
    """(index, tuning kept beside it in the JSON sidecar)."""
    from organizer.store.vectors import count_present, iter_present_vectors

    dim = int(store.get_meta("dim") or 1)
    n = count_present(store)
    kind = kind or choose_kind(n, dim)
    if kind == "flat":  # checksums verified: a damaged shard is reported, never indexed as if fine
        return _build_flat(iter_present_vectors(store, verify=True), dim), {}
    return _build_ivf(store, n, dim)


def _build_flat(chunks, dim: int):
    import faiss

    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    for rowids, X in chunks:
        index.add_with_ids(X, rowids)
    return index


def _build_ivf(store: Store, n: int, dim: int, nlist: int | None = None):
    import faiss

    from organizer.store.vectors import iter_present_vectors

    nlist = min(nlist or n_lists(n), max(1, n // 8))  # tiny libraries (forced IVF in tests) still train
    rng = np.random.default_rng(SEED)
    n_train = min(n, TRAIN_PER_LIST * nlist)
    pick = np.sort(rng.choice(n, size=n_train, replace=False))
    n_cal = min(CALIBRATION_QUERIES, n)
    cal_pick = np.sort(rng.choice(n, size=n_cal, replace=False))
    train, queries = [], []
    seen = 0
    for _, X in iter_present_vectors(store, verify=True):  # pass 1: training sample, calibration queries
        for picked, out in ((pick, train), (cal_pick, queries)):
            lo, hi = np.searchsorted(picked, [seen, seen + len(X)])
            if hi > lo:
                out.append(X[picked[lo:hi] - seen])
        seen += len(X)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT)
    index.by_residual = False  # raw float16 vectors: exactly what the store holds
    index.cp.seed = SEED
    if not train:  # the store changed under us between counting and reading: build exact instead
        return _build_flat(iter_present_vectors(store), dim), {}
    index.train(np.concatenate(train))
    del train
    stored = np.concatenate(queries)
    # Queries are stored vectors (what `similar` asks) and the same vectors moved by noise to
    # cosine ~0.7 (a new photo of a known subject, which lands between lists more often).
    noise = rng.normal(size=stored.shape).astype(np.float32) / np.sqrt(dim)
    moved = stored + noise * np.linalg.norm(stored, axis=1, keepdims=True)
    moved /= np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12)
    Q = np.ascontiguousarray(np.concatenate([stored, moved]), dtype=np.float32)
    best_s = np.full((len(Q), CALIBRATION_K), -np.inf, np.float32)
    best_i = np.full((len(Q), CALIBRATION_K), -1, np.int64)
    for rowids, X in iter_present_vectors(store):  # pass 2: add, and exact top-k for calibration
        index.add_with_ids(X, rowids)
        best_s, best_i = _merge_topk(best_s, best_i, Q @ X.T, rowids, CALIBRATION_K)
    half = len(stored)
    index.nprobe = calibrate_nprobe(index, [(Q[:half], best_i[:half]), (Q[half:], best_i[half:])], TARGET_RECALL)
    # A query whose best match scores below what almost every calibration query found (say a
    # text query, or a photo of something the library lacks) has its neighbours spread thinly
    # over many lists: query() searches WIDEN times more lists for it.
    widen_below = float(np.percentile(best_s[half:, 0], 1)) if half else -1.0
    return index, {"widen_below": widen_below}


def _merge_topk(best_s, best_i, scores, rowids, k):
    k_here = min(k, scores.shape[1])
    part = np.argpartition(-scores, k_here - 1, axis=1)[:, :k_here]
    s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], axis=1)
    i = np.concatenate([best_i, rowids[part]], axis=1)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k ids that were found (ids < 0 ignored)."""
    hits = total = 0
    for f, e in zip(found, exact):
        e = set(int(x) for x in e if x >= 0)
        hits += len(e & set(int(x) for x in f))
        total += len(e)
    return hits / max(total, 1)


def calibrate_nprobe(index, sets: list[tuple[np.ndarray, np.ndarray]], target: float) -> int:
    """The smallest nprobe whose recall@k reaches `target` on every (queries, exact ids) set:
    doubling until it does, then bisecting between the last miss and the first hit."""
    def good(nprobe: int) -> bool:
        index.nprobe = nprobe
        return all(recall_at_k(index.search(Q, exact.shape[1])[1], exact) >= target for Q, exact in sets)

    lo, nprobe = 0, 1
    while not good(nprobe) and nprobe < index.nlist:
        lo, nprobe = nprobe, min(index.nlist, nprobe * 2)
    while nprobe - lo > max(1, nprobe // 8):
        mid = (lo + nprobe) // 2
        if good(mid):
            nprobe = mid
        else:
            lo = mid
    return nprobe


def _rowids(store: Store, ids: list[str]) -> np.ndarray:
    lookup = {r[0]: r[1] for r in store.db.execute("SELECT id, rowid FROM images")}
    return np.array([lookup[i] for i in ids], dtype=np.int64)


def describe(index) -> dict:
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return {"kind": "flat"}
    return {"kind": "ivf", "nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe)}


def save_index(store: Store, index, tuning: dict | None = None) -> None:
    import faiss

    from organizer.store import disk_full_guard

    path, meta = _paths(store)
    data = faiss.serialize_index(index).tobytes()
    info = json.dumps({"vectors_version": store.vectors_version, "backbone": store.backbone,
                       "ntotal": int(index.ntotal), "sha256": hashlib.sha256(data).hexdigest(),
                       **describe(index), "tuning": tuning or {}}).encode()
    # Both files are complete under temporary names before either is renamed; a crash between
    # the two renames leaves a pair whose checksum disagrees, which loading detects and rebuilds.
    temps = [(path.with_name(path.name + ".tmp"), data, path), (meta.with_name(meta.name + ".tmp"), info, meta)]
    try:
        with disk_full_guard(store, "the search index cache"):
            for tmp, payload, _ in temps:
                with open(tmp, "wb") as f:
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
            for tmp, _, final in temps:
                replace_file(tmp, final)
    except BaseException:
        for tmp, _, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    _remember(store, index, tuning or {})


def _stamp(store: Store):
    """What must be unchanged for an index already in memory to still be right."""
    path, meta = _paths(store)
    try:
        st, sm = path.stat(), meta.stat()
    except OSError:
        return None
    return (store.vectors_version, store.backbone, st.st_size, st.st_mtime_ns, sm.st_mtime_ns)


def _remember(store: Store, index, tuning: dict) -> None:
    stamp = _stamp(store)
    with _LOCK:
        if stamp is not None:
            _LOADED[str(store.root)] = (stamp, index, tuning)


def forget(store: Store | None = None) -> None:
    """Drop indexes held in memory (all, or one store's)."""
    with _LOCK:
        if store is None:
            _LOADED.clear()
        else:
            _LOADED.pop(str(store.root), None)


def load_index(store: Store, *, rebuild: bool = True):
    """The saved index if it is intact and current, else a fresh one built from the store."""
    return _load(store, rebuild=rebuild)[0]


def _load(store: Store, *, rebuild: bool = True) -> tuple[object, dict]:
    import faiss

    stamp = _stamp(store)
    with _LOCK:
        held = _LOADED.get(str(store.root))
    if held is not None and stamp is not None and held[0] == stamp:
        return held[1], held[2]
    path, meta = _paths(store)
    try:
        info = json.loads(meta.read_text())
        data = path.read_bytes()
        if (info["vectors_version"] == store.vectors_version and info["backbone"] == store.backbone
                and hashlib.sha256(data).hexdigest() == info["sha256"]):
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            del data
            tuning = info.get("tuning") or {}
            _remember(store, index, tuning)
            return index, tuning
    except (OSError, ValueError, KeyError, RuntimeError):
        pass  # missing or damaged cache: rebuild below
    if not rebuild:
        return None, {}
    index, tuning = _build(store)
    from organizer.store import DiskFullError

    try:
        save_index(store, index, tuning)
    except DiskFullError as e:  # a cache: answer from memory now, save it another time
        import sys

        print(f"organizer: note: {e}; the search index was not cached", file=sys.stderr)
    return index, tuning


def query(store: Store, vectors: np.ndarray, k: int = 10, *, exclude: set[str] | None = None
          ) -> list[list[tuple[str, float]]]:
    """For each query vector, up to k (image_id, score) pairs, best first."""
    import faiss

    index, tuning = _load(store)
    if index.ntotal == 0:
        return [[] for _ in range(len(vectors))]
    extra = len(exclude or ())
    q = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
    kk = min(k + extra, index.ntotal)
    threads = faiss.omp_get_max_threads()
    if len(q) <= 4:  # one query runs on one thread anyway; idle OpenMP workers only spin
        faiss.omp_set_num_threads(1)
    try:
        scores, rowids = index.search(q, kk)
        low = scores[:, 0] < tuning.get("widen_below", -np.inf)
        ivf = faiss.try_extract_index_ivf(index) if low.any() else None
        if ivf is not None:
            params = faiss.SearchParametersIVF(nprobe=min(ivf.nlist, ivf.nprobe * WIDEN))
            scores[low], rowids[low] = index.search(q[low], kk, params=params)
    finally:
        faiss.omp_set_num_threads(threads)
    by_rowid = {}
    wanted = {int(r) for r in rowids.ravel() if r >= 0}
    if wanted:
        sql = f"SELECT rowid, id FROM images WHERE rowid IN ({','.join('?' * len(wanted))})"
        by_rowid = {r[0]: r[1] for r in store.db.execute(sql, list(wanted))}
    out = []
    for srow, rrow in zip(scores, rowids):
        hits = [(by_rowid[int(r)], float(s)) for s, r in zip(srow, rrow)
                if r >= 0 and by_rowid.get(int(r)) not in (exclude or ())]
        out.append(hits[:k])
    return out
