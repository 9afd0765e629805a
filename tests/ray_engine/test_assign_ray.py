"""cluster.py's assignment of rows outside the fitted sample, as Ray tasks (engine_ray.assign_rest),
gives exactly what the local code computes (slow: UMAP's first fit compiles with numba)."""
from __future__ import annotations

import numpy as np
import pytest

from support import stored_vectors

pytestmark = pytest.mark.slow


def test_assign_rest_on_ray_equals_local(ray_cluster, sample_store, monkeypatch):
    import ray

    from organizer import engine_ray
    from organizer.cluster import HDBSCANClusterer, UMAPReducer, _vote, sample_indices

    X = np.stack(list(stored_vectors(sample_store).values())).astype(np.float32)
    idx = sample_indices(len(X), 80, 0)
    rest = np.setdiff1d(np.arange(len(X)), idx)
    reducer = UMAPReducer(max_fit=80, random_state=0).fit(X)
    E_fit = reducer.fit_embedding_
    h = HDBSCANClusterer(min_cluster_size=5, max_fit=None).fit(E_fit)
    want = _vote(E_fit, h.labels_, h.probabilities_, reducer.transform(X[rest]), 15)
    for k, v in ray_cluster.env().items():
        if k.startswith("RAY_"):
            monkeypatch.setenv(k, v)
    from ray._private import ray_constants  # imported before the env above: set what it read
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    try:
        got = engine_ray.assign_rest(reducer, E_fit, h.labels_, h.probabilities_, X[rest], k=15, chunk_rows=16,
                                     address=ray_cluster.address)
    finally:
        ray.shutdown()
    assert len(set(h.labels_)) >= 2  # a real split to reproduce
    assert np.array_equal(got[0], want[0]) and np.allclose(got[1], want[1])
    assert reducer.reducer_ is not None  # the caller's reducer is left whole
