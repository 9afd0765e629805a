"""Group image embeddings: copies joined, UMAP (cosine -> 10-d), the HDBSCAN group tree, then
the remainder placed. No default depends on the library's size (organizer/discover/hierarchy.py says why
each value is what it is; benchmarks/library_shapes.py measures every shape).

0. Copies: rows of the fit sample that are one picture (identical to the backbone, or a set
   far closer together than to anything else and than this library's pictures usually are:
   hierarchy.near_copy_representatives) count once; the pipeline runs on distinct pictures
   and each copy takes its picture's group.
1. UMAP to 10 dimensions (cosine, n_neighbors=15, min_dist=0, seeded). Above ``max_fit`` (20k)
   rows UMAP is fitted on a seeded sample; the other rows are put at the weighted mean of their
   nearest sample rows (found in a 128-d PCA of the sample), because umap's own transform costs
   ~10 ms a row on CPU. Fits of >= 20k rows build UMAP's neighbour graph exactly (faiss) in
   that PCA instead of UMAP's single-threaded 1280-d neighbour descent.
2. HDBSCAN (smallest group 10, density from 5 neighbours) gives the group tree; the level shown
   first is chosen by hierarchy.py (stable groups, split what is mixed, clutter given up, the
   finest leaf level with no look-alikes where features are weakly separated). Above max_fit each other row takes the finest
   tree node most of its 15 nearest sample rows are in.
3. Remainder: a noise point joins the group that holds at least ``place_threshold`` of its
   ``place_k`` nearest points in UMAP space, noise counting as a vote, so clutter stays -1.

Same input + same seed => identical labels (UMAP is seeded, so it runs single-threaded).
Fewer than ``min_points`` (10) vectors are not clustered: every label is -1.
All-identical vectors form one cluster.
"""
from __future__ import annotations

import copy
import time
import warnings
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np

from organizer.discover.alike import distance_to_group, farthest_member, group_sums, tight_groups_beside_tree
from organizer.discover.hierarchy import AGREEMENT_K, COPY_LOOK, near_copy_representatives, neighbour_graph

_CHUNK = 65536  # rows per chunk for transform / kNN queries: bounds peak memory
_BLOCK = 1024   # rows per projection block (see UMAPReducer._project)


# -- rows outside the fitted sample: the same bits here or on a cluster ------------------------
# Each such row's result is the same bits whatever part of the rows it is computed in, and in
# whatever process, provided the parts are whole _BLOCKs (see _stable_knn, UMAPReducer._project). So
# ROW_ENGINE (organizer/engine_ray/rows.py sets it for `cluster --engine ray`) may run fn(shared, X[part])
# anywhere, over parts of `rows` that are multiples of _BLOCK rows, yielding the results in order.
ROW_ENGINE: ContextVar = ContextVar("organizer_row_engine", default=None)


def _map_rows(fn, shared, X, rows):
    engine = ROW_ENGINE.get()
    if engine is not None:
        return engine(fn, shared, X, rows)
    return (fn(shared, X[rows[i:i + _CHUNK]]) for i in range(0, len(rows), _CHUNK))


def _stable_knn(index, base, Q, k):
    """(squared distances, indices) of the k nearest rows of `base` to each row of Q, nearest first,
    ties to the lower row. faiss finds 2k candidates; their distances are then recomputed row by
    row, because faiss's own (BLAS) distances change in the last bits with the batch and the number
    of threads, and a neighbour's weight with them."""
    kk = int(min(2 * k, len(base)))
    _, cand = _knn_query(index, Q, kk)
    d = np.empty(cand.shape, np.float32)
    for i in range(0, len(Q), _BLOCK):
        d[i:i + _BLOCK] = np.square(Q[i:i + _BLOCK, None, :] - base[cand[i:i + _BLOCK]]).sum(axis=2)
    by_row = np.argsort(cand, axis=1)
    cand, d = np.take_along_axis(cand, by_row, 1), np.take_along_axis(d, by_row, 1)
    near = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, near, 1), np.take_along_axis(cand, near, 1)


def sample_indices(n: int, max_fit: int | None, seed: int) -> np.ndarray:
    """Sorted seeded subset of range(n) of size <= max_fit (all rows if it fits)."""
    if not max_fit or n <= max_fit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_fit, replace=False))


def _knn_index(P):
    """Exact L2 index: faiss when installed (fast, multi-threaded), else scikit-learn."""
    try:
        import faiss
        index = faiss.IndexFlatL2(P.shape[1])
        index.add(P)
        return index
    except ImportError:
        from sklearn.neighbors import NearestNeighbors
        return NearestNeighbors(algorithm="brute").fit(P)


def _knn_query(index, Q, k):
    """(squared distances, indices) of the k nearest indexed rows, nearest first."""
    if hasattr(index, "kneighbors"):
        d, i = index.kneighbors(Q, n_neighbors=k)
        return d ** 2, i
    return index.search(Q, k)


class UMAPReducer:
    """Thin seeded wrapper over umap.UMAP that fits on at most ``max_fit`` rows."""

    def __init__(self, n_components=10, n_neighbors=15, min_dist=0.0, metric="cosine",
                 random_state=0, max_fit=20_000, pca_dims=128, pca_min_rows=20_000):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.random_state = random_state
        self.max_fit = max_fit
        self.pca_dims = pca_dims
        self.pca_min_rows = pca_min_rows

    def fit(self, X):
        import umap  # heavy (numba): imported only when used
        X = np.asarray(X, dtype=np.float32)  # no copy of the full matrix: only samples/chunks
        n = len(X)
        started = time.perf_counter()
        idx = sample_indices(n, self.max_fit, self.random_state or 0)
        m = len(idx)
        Xs = self._prep(X[idx])
        # PCA of the sample (<= pca_dims): UMAP's neighbour graph and the out-of-sample kNN work
        # there. On unit vectors euclidean distance orders like cosine, and 128 components keep
        # the neighbourhoods while each distance costs a tenth of 1280-d.
        self.mean_ = Xs.mean(axis=0)
        exact = bool(self.pca_dims) and self.metric == "cosine" and m >= self.pca_min_rows
        k = int(min(self.pca_dims or 128, X.shape[1], m))
        self.components_ = np.linalg.svd(Xs[:4096 * 4] - self.mean_, full_matrices=False)[2][:k].astype(np.float32) \
            if m > k else np.eye(X.shape[1], dtype=np.float32)
        self.fit_projected_ = self._project(Xs)
        n_neighbors = int(min(self.n_neighbors, max(2, m - 1)))
        self.reducer_ = umap.UMAP(
            n_components=int(min(self.n_components, max(1, m - 2))),
            n_neighbors=n_neighbors, min_dist=self.min_dist,
            metric="euclidean" if exact else self.metric, random_state=self.random_state,
            # spectral init needs n_components + 1 < m; random init always works
            init="spectral" if m > 4 * self.n_components else "random",
            # exact neighbours from faiss (multi-threaded, deterministic) instead of UMAP's
            # single-threaded nearest-neighbour descent; umap needs no search index for fit
            precomputed_knn=self._exact_knn(n_neighbors) if exact and m > 4096 else (None, None, None),
        )
        with warnings.catch_warnings():  # "n_jobs overridden by random_state": expected, seeded on purpose
            warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*precomputed_knn.*", category=UserWarning)
            fitted = self.reducer_.fit_transform(self.fit_projected_ if exact else Xs).astype(np.float32)
        self.fit_indices_ = idx
        self.fit_embedding_ = fitted
        self._index = None
        self.fit_seconds_ = time.perf_counter() - started
        emb = np.empty((n, fitted.shape[1]), dtype=np.float32)
        emb[idx] = fitted
        rest = np.setdiff1d(np.arange(n), idx, assume_unique=True)
        slim = copy.copy(self)
        slim.reducer_ = None  # transform needs the sample's projection and embedding, not umap's graph
        at = 0
        for part in _map_rows(UMAPReducer.transform, slim, X, rest):
            emb[rest[at:at + len(part)]] = part
            at += len(part)
        self.embedding_ = emb
        return self

    def _exact_knn(self, k):
        """(indices, distances, None) of each sample row's k nearest rows, itself first."""
        index = _knn_index(self.fit_projected_)
        dist = np.empty((len(self.fit_projected_), k), dtype=np.float32)
        nbr = np.empty((len(self.fit_projected_), k), dtype=np.int64)
        for i in range(0, len(dist), _CHUNK):
            d, j = _knn_query(index, self.fit_projected_[i:i + _CHUNK], k)
            dist[i:i + _CHUNK], nbr[i:i + _CHUNK] = np.sqrt(np.maximum(d, 0)), j
        return nbr, dist, None

    def _prep(self, X):
        X = np.asarray(X, dtype=np.float32)
        if self.metric == "cosine":  # cosine == euclidean on unit vectors
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        return X

    def _project(self, X):
        """(X - mean) @ components.T in blocks of _BLOCK rows (the last one padded) on one BLAS
        thread: BLAS results change in the last bits with the matrix size, a row's place in it and
        the threads; fixed blocks give a row the same bits in any batch that starts at a multiple
        of _BLOCK, in any process. It is a tenth of a transform's work."""
        from threadpoolctl import threadpool_limits

        Xc = np.asarray(X, np.float32) - self.mean_
        out = np.empty((len(Xc), len(self.components_)), np.float32)
        with threadpool_limits(1, user_api="blas"):
            for i in range(0, len(Xc), _BLOCK):
                part = Xc[i:i + _BLOCK]
                if len(part) < _BLOCK:
                    part = np.concatenate([part, np.zeros((_BLOCK - len(part), Xc.shape[1]), np.float32)])
                out[i:i + _BLOCK] = (part @ self.components_.T)[:len(out) - i]
        return out

    def transform(self, X):
        """Place new rows at the similarity-weighted mean of their n_neighbors nearest
        fitted rows (UMAP's own transform initialisation, without its optimisation,
        which costs ~10 ms per row on CPU: hours at 1M)."""
        X = np.asarray(X, dtype=np.float32)
        out = np.empty((len(X), self.fit_embedding_.shape[1]), dtype=np.float32)
        if self._index is None:
            self._index = _knn_index(self.fit_projected_)
        k = int(min(self.n_neighbors, len(self.fit_embedding_)))
        for i in range(0, len(X), _CHUNK):
            d, nbr = _stable_knn(self._index, self.fit_projected_, self._project(self._prep(X[i:i + _CHUNK])), k)
            d = np.sqrt(np.maximum(d, 0))
            w = np.exp(-(d - d[:, :1]) / np.maximum((d - d[:, :1]).mean(axis=1, keepdims=True), 1e-6))
            out[i:i + _CHUNK] = np.einsum("mk,mkc->mc", w / w.sum(axis=1, keepdims=True),
                                          self.fit_embedding_[nbr])
        return out

    def fit_transform(self, X):
        return self.fit(X).embedding_


class HDBSCANClusterer:
    """HDBSCAN's group tree with an absolute smallest group, then the level a person sees first
    (organizer/discover/hierarchy.py): ``cluster_selection_method`` "auto" (stable groups, split what is
    mixed, leaf ladder where the features are weakly separated), "eom" or "leaf".

    Fits on at most ``max_fit`` rows (seeded sample); every other row takes the finest tree node
    most of its ``vote_k`` nearest sample rows are in (noise included), in the reduced space.
    ``labels_``: flat group per row (-1 noise); ``nodes_``: the finest tree node per row (-1 none);
    ``kept_``: tree nodes worth showing (flat groups, their ancestors and their sub-groups)."""

    def __init__(self, min_cluster_size=10, min_samples=5, cluster_selection_method="auto",
                 max_fit=20_000, random_state=0, vote_k=15):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.max_fit = max_fit
        self.random_state = random_state
        self.vote_k = vote_k

    loose_dropped_ = 0   # groups given up as clutter (hierarchy.GroupTree.without_loose)
    level_kappa_ = None  # how distinct the stable groups are (hierarchy.level_kappa; "auto" only)
    fringe_ = 0          # fringe rows nearer another group, unsorted (hierarchy.GroupTree.fringe)

    def fit(self, E, X=None, wide=None):
        import hdbscan  # heavy: imported only when used

        from organizer.discover.hierarchy import (DISTINCT_KAPPA, GroupTree, level_kappa,
                                                  most_distinct_leaf_level, unit_rows)

        E = np.asarray(E, dtype=np.float32)
        n = len(E)
        idx = sample_indices(n, self.max_fit, self.random_state or 0)
        m = len(idx)
        mcs = int(max(2, min(self.min_cluster_size, m)))
        # a density never wider than the smallest group it must find
        ms = None if self.min_samples is None else int(max(1, min(self.min_samples, mcs, m - 1)))
        h = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms).fit(E[idx])
        tree = GroupTree(h.condensed_tree_.to_numpy(), m)
        # each row's COPY_LOOK nearest rows and similarities in the backbone's own space (X), else in
        # E; `wide` if the caller has them. Exact search: the first AGREEMENT_K are the nearest.
        if wide is None:
            wide = neighbour_graph(E[idx] if X is None else np.asarray(X, np.float32)[idx],
                                   k=COPY_LOOK, with_similarity=True)
        self.neighbours_ = wide[0][:, :AGREEMENT_K]
        method = self.cluster_selection_method
        Xn = None
        if method == "leaf":
            selected = tree.leaves()
        elif method == "eom":
            selected = tree.stable_selection(log=False)
        else:
            # the fit rows in the backbone's space, as unit vectors once, for rules 2 and 3
            Xn = None if X is None else unit_rows(np.asarray(X, np.float32)[idx])
            selected = tree.split_mixed(tree.stable_selection(), self.neighbours_, Xn)
            if Xn is not None:  # clutter that UMAP gathered into a blob is no group (hierarchy.py rule 3)
                selected, self.loose_dropped_ = tree.without_loose(selected, Xn, wide)
            biggest = max((len(tree.rows(v)) for v in selected), default=0)
            # a group is not the library, and groups that are not distinct are no level: weakly separated (rule 4)
            self.level_kappa_ = level_kappa(tree, selected, self.neighbours_, E[idx])
            if len(selected) < 3 or biggest > m / 2 or self.level_kappa_ < DISTINCT_KAPPA:
                mcs, leaves, leaf_tree = most_distinct_leaf_level(h.single_linkage_tree_.to_numpy(), m,
                                                                  self.neighbours_, mcs, E[idx])
                if leaf_tree is not None:
                    tree, selected, method = leaf_tree, leaves, "leaf ladder"
            method = "stable" if method == "auto" else method
        self.selection_used_ = method
        self.min_cluster_size_used_ = mcs
        self.tree_, self.selected_ = tree, selected
        keep = set(selected)
        for v in selected:
            keep.update(tree.ancestors(v))
            keep.update(tree.descendants(v))
        self.kept_ = keep
        flat_fit, strength = tree.labels(selected)
        node_fit = tree.finest_node(keep)
        if method == "stable" and Xn is not None:  # the fringe nearer another group (hierarchy.py rule 6)
            out, back = tree.fringe(selected, Xn)
            flat_fit[out], strength[out], node_fit[out] = -1, 0.0, back
            self.fringe_ = len(out)
        labels = np.full(n, -1, dtype=np.int64)
        nodes = np.full(n, -1, dtype=np.int64)
        probs = np.zeros(n, dtype=np.float32)
        labels[idx], nodes[idx], probs[idx] = flat_fit, node_fit, strength
        rest = np.setdiff1d(np.arange(n), idx, assume_unique=True)
        if len(rest):
            compact, node_code = np.unique(node_fit, return_inverse=True)   # node ids -> 0..K-1
            fit = (E[idx], node_code.astype(np.int64) - int(compact[0] < 0), strength, self.vote_k)
            code, probs[rest] = (np.concatenate(p) for p in zip(*_map_rows(_vote_rows, fit, E, rest)))
            voted = np.where(code >= 0, compact[np.maximum(code + int(compact[0] < 0), 0)], -1)
            nodes[rest] = voted
            flat_of = {v: i for i, v in enumerate(selected)}
            for v in selected:
                for d in tree.descendants(v):
                    flat_of[d] = flat_of[v]
            labels[rest] = np.array([flat_of.get(int(v), -1) for v in voted], np.int64)
            probs[rest] = np.where(labels[rest] >= 0, probs[rest], 0.0)
        self.labels_, self.nodes_ = labels, nodes
        self.probabilities_ = np.nan_to_num(probs, nan=0.0).clip(0, 1).astype(np.float32)
        return self


def default_params(n: int, max_fit: int = 20_000) -> dict:
    """Defaults for n vectors. None of them grows with the library: a group of 10 is a group in
    a library of 200 and of 10 million (organizer/discover/hierarchy.py says why each value is what it is)."""
    from organizer.discover.hierarchy import MIN_GROUP, MIN_SAMPLES

    return {
        "n_components": 10, "n_neighbors": 15, "min_dist": 0.0, "metric": "cosine",
        "pca_dims": 128,               # fits of >= pca_min_rows rows: UMAP's graph from exact
        "pca_min_rows": 20_000,        # kNN in a 128-d PCA (below, UMAP's own in full dims)
        "max_fit": max_fit,
        "cluster_selection_method": "auto",
        "min_cluster_size": MIN_GROUP,
        "min_samples": MIN_SAMPLES,
        "place_k": 15,                 # remainder placement: k nearest clustered points
        "place_threshold": 0.5,        # a majority of them must agree; 1.01 disables it
        "min_points": 10,              # below this nothing is clustered (all -1)
    }


@dataclass
class ClusterResult:
    labels: np.ndarray          # int64, after placement, -1 = unsorted, 0 = largest cluster
    core_labels: np.ndarray     # int64, HDBSCAN's own labels (same numbering), -1 = noise
    probabilities: np.ndarray   # float32 [0,1]: HDBSCAN membership, or kNN vote share if placed
    params: dict = field(default_factory=dict)  # everything used, JSON-serializable
    nodes: np.ndarray | None = None       # int64: finest group-tree node per row (ids below), -1 none
    tree: list[dict] = field(default_factory=list)   # {id, parent (-1 top), size, level}: level is
    # "group" (the flat clusters 0..k-1), "parent" (a group of groups) or "sub-group" (a part of one)
    agreement: list[float] = field(default_factory=list)  # per flat cluster (hierarchy.agreement)
    merges: list[tuple[int, int, float]] = field(default_factory=list)  # (a, b, kappa): look alike

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max() + 1) if len(self.labels) else 0


def _vote_rows(fit, E_rest):
    return _vote(*fit[:3], E_rest, fit[3])


def _vote(E_fit, labels_fit, probs_fit, E_rest, k):
    """Label of each E_rest row by majority of its k nearest E_fit rows (-1 counts as a label);
    probability = share of the vote times those neighbours' mean membership."""
    E_fit = np.ascontiguousarray(E_fit, dtype=np.float32)
    index = _knn_index(E_fit)
    k = int(min(k, len(E_fit)))
    shift = 1  # labels -1.. -> 0..
    n_labels = int(labels_fit.max()) + 1 + shift
    out_l = np.empty(len(E_rest), dtype=np.int64)
    out_p = np.empty(len(E_rest), dtype=np.float32)
    for i in range(0, len(E_rest), _CHUNK):
        _, nbr = _stable_knn(index, E_fit, np.ascontiguousarray(E_rest[i:i + _CHUNK], dtype=np.float32), k)
        votes = labels_fit[nbr] + shift
        counts = np.zeros((len(nbr), n_labels), dtype=np.int32)
        np.add.at(counts, (np.arange(len(nbr))[:, None], votes), 1)
        best = counts.argmax(axis=1)
        share = counts[np.arange(len(nbr)), best] / k
        agree = votes == best[:, None]
        strength = (probs_fit[nbr] * agree).sum(axis=1) / np.maximum(agree.sum(axis=1), 1)
        out_l[i:i + _CHUNK] = best - shift
        out_p[i:i + _CHUNK] = np.where(best >= shift, share * strength, 0.0)
    return out_l, out_p


def _place_remainder(E, core, k, threshold, X=None):
    """kNN vote in embedding space: a noise point joins the group that holds at least
    ``threshold`` of its k nearest neighbours, noise counting as a vote of its own, so clutter
    (whose neighbours are clutter too) stays unsorted. With the backbone's vectors ``X``, a point
    joins only a group it is no farther from (mean cosine distance to the members) than that
    group's own farthest member: UMAP surrounds a small tight group with the clutter around it.
    Returns (labels, vote share)."""
    labels = core.copy()
    share = np.zeros(len(core), dtype=np.float32)
    noise = np.flatnonzero(core < 0)
    if threshold > 1 or not (core >= 0).any() or not len(noise):
        return labels, share
    index = _knn_index(np.ascontiguousarray(E, dtype=np.float32))
    k = int(min(k + 1, len(E)))
    n_labels = int(core.max()) + 2   # slot 0 = noise
    limits = sums = sizes = None
    for i in range(0, len(noise), _CHUNK):
        rows = noise[i:i + _CHUNK]
        _, nbr = _knn_query(index, np.ascontiguousarray(E[rows], dtype=np.float32), k)
        nbr = nbr[:, 1:]                                   # the point itself comes first
        votes = core[nbr] + 1
        counts = np.zeros((len(rows), n_labels), dtype=np.int32)
        np.add.at(counts, (np.arange(len(rows))[:, None], votes), 1)
        counts[:, 0] = 0                                   # noise neighbours only dilute the share
        best = counts.argmax(axis=1)
        frac = counts[np.arange(len(rows)), best] / nbr.shape[1]
        ok = (frac >= threshold) & (best > 0)
        if X is not None and ok.any():
            if limits is None:
                sums, sizes = group_sums(X, core)
                limits = farthest_member(X, core, sums, sizes)
            g = best - 1
            far = distance_to_group(X[rows[ok]], g[ok], sums, sizes)
            ok[np.flatnonzero(ok)[far > limits[g[ok]]]] = False
        labels[rows[ok]] = best[ok] - 1
        share[rows] = np.where(ok, frac, 0.0)
    return labels, share


def _renumber(labels, *others):
    """Renumber clusters 0..k-1 by size of ``labels`` (descending, ties by old id)."""
    k = int(labels.max() + 1) if len(labels) else 0
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    order = np.argsort(-sizes, kind="stable")
    order = order[sizes[order] > 0]
    mapping = np.full(k + 1, -1, dtype=np.int64)       # last slot maps -1 -> -1
    mapping[order] = np.arange(len(order))
    return [mapping[a] for a in (labels, *others)]


def cluster_vectors(X: np.ndarray, *, min_cluster_size: int | None = None, seed: int = 0,
                    _join_copies: bool = True, **overrides) -> ClusterResult:
    """Cluster n×d vectors (any scale; cosine geometry). ``overrides`` replace keys of
    default_params(n); ``min_cluster_size`` is the smallest group.
    Degenerate inputs: n < min_points -> all -1; all rows identical -> one cluster."""
    X = np.asanyarray(X, dtype=np.float32)  # a memory map stays one (engine_ray/rows.py: StagedRows)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {X.shape}")
    if not all(np.isfinite(X[i:i + _CHUNK]).all() for i in range(0, len(X), _CHUNK)):
        raise ValueError("vectors contain NaN or inf")
    n = len(X)
    p = default_params(n, **({"max_fit": overrides["max_fit"]} if "max_fit" in overrides else {}))
    unknown = set(overrides) - set(p)
    if unknown:
        raise TypeError(f"unknown clustering parameter(s): {sorted(unknown)}")
    p.update(overrides)
    if min_cluster_size is not None:
        p["min_cluster_size"] = int(min_cluster_size)
    p.update(seed=int(seed), n=int(n), selection_used=None)

    def result(labels, core, probs):
        return ClusterResult(labels.astype(np.int64), core.astype(np.int64),
                             probs.astype(np.float32), p)

    if n < p["min_points"]:
        p["selection_used"] = "none: too few points"
        return result(np.full(n, -1), np.full(n, -1), np.zeros(n))
    if np.ptp(X, axis=0).max() <= 1e-7:   # UMAP/HDBSCAN misbehave on zero spread
        p["selection_used"] = "none: identical vectors"
        return result(np.zeros(n), np.zeros(n), np.ones(n))

    # The same picture twice (a re-encoded or resized copy) is one picture: density is measured
    # over distinct pictures, so a pile of copies is no dense group of its own; copies then take
    # their picture's group.
    idx = sample_indices(n, p["max_fit"], seed)
    neighbours_all, similarity = neighbour_graph(X[idx], k=COPY_LOOK, with_similarity=True)
    reps, pos = (near_copy_representatives(neighbours_all, similarity) if _join_copies
                 else (np.arange(len(idx)), np.arange(len(idx))))
    p["distinct_in_sample"] = int(len(reps))
    if len(reps) < len(idx):
        keep = np.setdiff1d(np.arange(n), idx[np.setdiff1d(np.arange(len(idx)), reps)], assume_unique=True)
        # one pass: the distinct pictures are not searched for copies again (a rule applied to its
        # own output would keep joining whatever is now nearest)
        inner = cluster_vectors(X[keep], min_cluster_size=min_cluster_size, seed=seed,
                                _join_copies=False, **overrides)
        where = np.full(n, -1, np.int64)
        where[keep] = np.arange(len(keep))
        source = where.copy()
        copies = np.flatnonzero(where < 0)
        rep_row = idx[reps[pos[np.searchsorted(idx, copies)]]]   # each copy's picture
        source[copies] = where[rep_row]
        inner.labels, inner.core_labels = inner.labels[source], inner.core_labels[source]
        inner.probabilities = inner.probabilities[source]
        if inner.nodes is not None:
            inner.nodes = inner.nodes[source]
            _recount_tree(inner)
        inner.params.update(n=int(n), distinct_in_sample=int(len(reps)), copies_joined=int(len(copies)))
        return inner

    clock = time.perf_counter()
    timings = p["timings_s"] = {}  # per stage, kept with the clustering's parameters

    def lap(stage):
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 2)
        clock = now

    reducer = UMAPReducer(n_components=p["n_components"], n_neighbors=p["n_neighbors"],
                          min_dist=p["min_dist"], metric=p["metric"], random_state=seed,
                          max_fit=p["max_fit"], pca_dims=p["pca_dims"],
                          pca_min_rows=p["pca_min_rows"])
    E = reducer.fit_transform(X)
    timings["umap_fit"] = round(reducer.fit_seconds_, 2)
    lap("umap")
    hc = HDBSCANClusterer(min_cluster_size=p["min_cluster_size"], min_samples=p["min_samples"],
                          cluster_selection_method=p["cluster_selection_method"],
                          max_fit=p["max_fit"], random_state=seed).fit(E, X, wide=(neighbours_all, similarity))
    lap("hdbscan")
    p.update(selection_used=hc.selection_used_, min_cluster_size_used=hc.min_cluster_size_used_,
             loose_groups_dropped=int(hc.loose_dropped_), fringe_rows=int(hc.fringe_),
             stable_kappa=None if hc.level_kappa_ is None else round(float(hc.level_kappa_), 3))
    core = hc.labels_
    labels, share = _place_remainder(E, core, p["place_k"], p["place_threshold"], X)
    lap("placement")
    k_tree = len(hc.selected_)
    beside_tree = tight_groups_beside_tree(X, labels, idx, p["max_fit"], seed)
    for j, (rows, inside) in enumerate(beside_tree):
        labels[rows], share[rows] = k_tree + j, inside
    p["tight_groups_found"] = len(beside_tree)
    lap("tight groups")
    probs = np.where(core >= 0, hc.probabilities_, share)
    order = _size_order(labels)
    beside = len(hc.tree_.parent)   # node ids for groups found beside the tree (rule 5)
    flat_id = {(hc.selected_[old] if old < k_tree else beside + old - k_tree): new
               for new, old in enumerate(order)}
    labels, core = _renumber(labels, core)
    out = result(labels, core, probs)
    _attach_tree(out, hc, flat_id)
    lap("tree")
    return out


def _recount_tree(out: ClusterResult) -> None:
    """Tree sizes from ``out.nodes`` (each node holds its own rows and every descendant's)."""
    counts = np.bincount(out.nodes[out.nodes >= 0], minlength=len(out.tree))
    parent = {t["id"]: t["parent"] for t in out.tree}
    sizes = counts.astype(np.int64).copy()
    for v in parent:
        p = parent[v]
        while p >= 0:
            sizes[p] += counts[v]
            p = parent[p]
    for t in out.tree:
        t["size"] = int(sizes[t["id"]])


def _size_order(labels):
    """Old flat ids, largest group first (the order _renumber gives)."""
    k = int(labels.max() + 1) if len(labels) else 0
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    order = np.argsort(-sizes, kind="stable")
    return [int(o) for o in order if sizes[o] > 0]


def _attach_tree(out: ClusterResult, hc: HDBSCANClusterer, flat_id: dict[int, int]) -> None:
    """Number the kept tree nodes (flat groups 0..k-1 as in ``labels``; others after them, largest
    first), give every row its finest node, and measure agreement and merge suggestions."""
    from organizer.discover.hierarchy import agreement, merge_suggestions

    tree, k = hc.tree_, len(flat_id)
    nodes = hc.nodes_.copy()
    placed = (out.labels >= 0) & (out.core_labels < 0)
    inv = {v: c for v, c in flat_id.items()}
    flat_node = np.array([v for v, _ in sorted(inv.items(), key=lambda t: t[1])], np.int64)
    if placed.any():
        nodes[placed] = flat_node[out.labels[placed]]
    others = [v for v in hc.kept_ if v not in flat_id]
    size_of = {v: len(tree.rows(v)) for v in others}
    ids = dict(flat_id)
    for v in sorted(others, key=lambda v: (-size_of[v], v)):
        ids[v] = len(ids)
    remap = np.full(int(max(ids, default=0)) + 2, -1, np.int64)
    for v, i in ids.items():
        remap[v] = i
    out.nodes = np.where(nodes >= 0, remap[np.maximum(nodes, 0)], -1)
    counts = np.bincount(out.nodes[out.nodes >= 0], minlength=len(ids))
    sizes = counts.copy()
    above = set()
    for v in flat_id:
        above.update(tree.ancestors(v))
    for v, i in ids.items():  # a node holds its own rows and every descendant's
        for d in tree.descendants(v):
            if d in ids:
                sizes[i] += counts[ids[d]]
    out.tree = [{"id": i, "parent": next((ids[a] for a in tree.ancestors(v) if a in ids), -1), "size": int(sizes[i]),
                 "level": "group" if i < k else ("parent" if v in above else "sub-group")}
                for v, i in sorted(ids.items(), key=lambda t: t[1])]
    idx = sample_indices(len(out.labels), hc.max_fit, hc.random_state or 0)
    fit_labels = out.labels[idx]
    out.agreement = [round(float(a), 4) for a in agreement(fit_labels, hc.neighbours_)][:k]
    out.merges = merge_suggestions(fit_labels, hc.neighbours_)
