"""Provisional clustering (UMAP + HDBSCAN leaf + kNN placement); replaced by the measured version."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClusterResult:
    labels: np.ndarray
    core_labels: np.ndarray
    probabilities: np.ndarray
    params: dict


def default_params(n: int) -> dict:
    return {"n_components": 10, "n_neighbors": 15, "min_cluster_size": max(5, int(0.01 * n)), "min_samples": 10}


def cluster_vectors(X: np.ndarray, *, min_cluster_size: int | None = None, seed: int = 0, **overrides) -> ClusterResult:
    n = len(X)
    params = {**default_params(n), **overrides, "seed": seed, "n": n}
    if min_cluster_size:
        params["min_cluster_size"] = int(min_cluster_size)
    if n < 6:
        z = np.full(n, -1, np.int64)
        return ClusterResult(z, z.copy(), np.zeros(n, np.float32), params)
    import hdbscan
    import umap

    E = umap.UMAP(n_components=min(params["n_components"], n - 2), n_neighbors=min(params["n_neighbors"], n - 1),
                  min_dist=0.0, metric="cosine", random_state=seed).fit_transform(X)
    h = hdbscan.HDBSCAN(min_cluster_size=max(2, min(params["min_cluster_size"], n // 2)),
                        min_samples=min(params["min_samples"], n - 1), cluster_selection_method="leaf").fit(E)
    core = h.labels_.astype(np.int64)
    sizes = np.bincount(core[core >= 0]) if (core >= 0).any() else np.zeros(0, int)
    remap = {old: new for new, old in enumerate(np.argsort(-sizes, kind="stable"))}
    core = np.array([remap.get(int(c), -1) for c in core], np.int64)
    labels, prob = core.copy(), h.probabilities_.astype(np.float32)
    if (core >= 0).any() and (core < 0).any():
        members = np.nonzero(core >= 0)[0]
        sims = X[core < 0] @ X[members].T
        k = min(10, len(members))
        nearest = np.argsort(-sims, axis=1)[:, :k]
        for row, i in enumerate(np.nonzero(core < 0)[0]):
            votes = np.bincount(core[members[nearest[row]]])
            if votes.max() >= 0.6 * k:
                labels[i], prob[i] = int(votes.argmax()), float(votes.max() / k) * 0.5
    return ClusterResult(labels, core, prob, params)
