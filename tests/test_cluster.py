"""organizer.discover.cluster on small seeded synthetic data, with the real UMAP + HDBSCAN."""
import json

import numpy as np
import pytest

from organizer.discover.cluster import HDBSCANClusterer, UMAPReducer, cluster_vectors, default_params


def blobs(sizes=(120, 80, 60), dim=32, spread=0.05, seed=0):
    """Well-separated Gaussian blobs around random unit directions, L2-normalized."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim))
    X = np.concatenate([c + spread * np.linalg.norm(c) * rng.normal(size=(s, dim)) for c, s in zip(centers, sizes)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), y


@pytest.fixture(scope="module")
def blob_result():
    X, y = blobs()
    return X, y, cluster_vectors(X, seed=0)


def test_recovers_blobs(blob_result):
    from sklearn.metrics import adjusted_rand_score

    X, y, r = blob_result
    assert r.n_clusters == 3
    assert (r.labels >= 0).mean() > 0.95
    kept = r.labels >= 0
    assert adjusted_rand_score(y[kept], r.labels[kept]) > 0.95


def test_result_types_and_numbering(blob_result):
    X, _, r = blob_result
    assert r.labels.dtype == np.int64 and r.core_labels.dtype == np.int64
    assert r.probabilities.dtype == np.float32 and len(r.probabilities) == len(X)
    assert ((r.probabilities >= 0) & (r.probabilities <= 1)).all()
    sizes = np.bincount(r.labels[r.labels >= 0])
    assert (np.diff(sizes) <= 0).all(), "cluster 0 is the largest"
    assert set(np.unique(r.labels)) - {-1} == set(range(r.n_clusters))
    # core points keep their cluster after placement; placement only fills noise
    core = r.core_labels >= 0
    assert (r.labels[core] == r.core_labels[core]).all()


def test_params_json_serializable(blob_result):
    X, _, r = blob_result
    p = json.loads(json.dumps(r.params))
    assert p["seed"] == 0 and p["n"] == len(X)
    assert p["selection_used"] in ("stable", "leaf ladder")


def test_same_seed_same_labels():
    X, _ = blobs(seed=1)
    a, b = cluster_vectors(X, seed=7), cluster_vectors(X, seed=7)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.core_labels, b.core_labels)
    assert np.array_equal(a.probabilities, b.probabilities)


@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_too_few_points(n):
    r = cluster_vectors(np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32))
    assert len(r.labels) == n and (r.labels == -1).all() and (r.core_labels == -1).all()
    json.dumps(r.params)


def test_identical_vectors_one_cluster():
    r = cluster_vectors(np.ones((30, 8), np.float32))
    assert (r.labels == 0).all() and r.n_clusters == 1


def test_single_class_does_not_raise():
    X, _ = blobs(sizes=(150,), seed=2)
    r = cluster_vectors(X)
    assert len(r.labels) == 150 and r.labels.max() < 10


def test_min_cluster_size_and_overrides():
    X, _ = blobs(seed=3)
    r = cluster_vectors(X, min_cluster_size=20, place_threshold=1.01)
    assert r.params["min_cluster_size"] == 20
    assert np.array_equal(r.labels, r.core_labels), "threshold > 1 disables placement"
    with pytest.raises(TypeError):
        cluster_vectors(X, no_such_param=1)
    with pytest.raises(ValueError):
        cluster_vectors(np.full((20, 4), np.nan, np.float32))


def test_no_default_grows_with_the_library():
    """A group of 10 is a group in a library of 160 and of a million: no size-relative floor."""
    small, big, huge = default_params(160), default_params(10_000), default_params(1_000_000)
    for key in ("min_cluster_size", "min_samples", "place_k", "place_threshold"):
        assert small[key] == big[key] == huge[key]
    assert small["min_cluster_size"] == 10


def test_subsampled_fit_labels_everything():
    """Above max_fit, UMAP/HDBSCAN fit a seeded sample and the rest is predicted."""
    X, y = blobs(sizes=(200, 150, 100), seed=4)
    r = cluster_vectors(X, max_fit=200, seed=0)
    assert r.params["min_cluster_size"] == default_params(200)["min_cluster_size"]
    assert r.nodes is not None and len(r.nodes) == len(X)
    flat = r.nodes < r.n_clusters
    assert (r.labels[(r.nodes >= 0) & flat] == r.nodes[(r.nodes >= 0) & flat]).all()
    assert r.n_clusters == 3 and (r.labels >= 0).mean() > 0.95
    from sklearn.metrics import adjusted_rand_score
    assert adjusted_rand_score(y, r.labels) > 0.9


def test_estimators_follow_sklearn_contract():
    X, _ = blobs(seed=5)
    red = UMAPReducer(n_components=3, random_state=0)
    assert red.n_components == 3 and not hasattr(red, "embedding_")
    E = red.fit_transform(X)
    assert E.shape == (len(X), 3) and E.dtype == np.float32
    assert red.transform(X[:5]).shape == (5, 3)
    hc = HDBSCANClusterer(min_cluster_size=15, cluster_selection_method="eom").fit(E)
    assert hc.min_cluster_size == 15 and hc.labels_.shape == (len(X),)
    assert hc.probabilities_.shape == (len(X),)
