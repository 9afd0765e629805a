"""Hierarchy rule 0: the smallest group counts distinct pictures, not rows. Variants of a few
near-identical shots (a burst of a scene, each shot re-encoded and cropped) run into each other
with no gap the copy rule could see; they are a few pictures, not a group."""
import hdbscan
import numpy as np

from organizer.discover.cluster import cluster_vectors
from organizer.discover.hierarchy import (GroupTree, count_pictures, copy_scale, neighbour_graph, picture_ids,
                                          unit_rows, without_copy_nodes)


def series_library(copies=10, classes=12, singles=12, series=2, shots=4, dim=64, seed=0, shot=0.25, noise=0.25):
    """Classes of 20 photos: 12 single photos and 2 series of 4 near-identical shots each; every
    photo ``copies`` times with small noise. At 10x a series is 40 rows (more than the copy rule
    looks at), a dense blob of 4 pictures."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    photos, y = [], []
    for k, c in enumerate(centers):
        for _ in range(singles):
            photos.append(c + rng.normal(size=dim) / np.sqrt(dim))
            y.append(k)
        for _ in range(series):
            base = c + rng.normal(size=dim) / np.sqrt(dim)
            for _ in range(shots):
                photos.append(base + shot * rng.normal(size=dim) / np.sqrt(dim))
                y.append(k)
    rows = np.repeat(np.array(photos), copies, axis=0)
    if copies > 1:
        rows = rows + noise * rng.normal(size=rows.shape) / np.sqrt(dim)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32), np.repeat(y, copies)


def test_series_of_variants_are_no_groups_at_10x():
    """At 10x the library has the groups it has at 1x; with rule 0 off (control) the series'
    variants come out as groups of their own."""
    X1, _ = series_library(copies=1)
    X10, _ = series_library(copies=10)
    r1, r10 = cluster_vectors(X1, seed=0), cluster_vectors(X10, seed=0)
    off = cluster_vectors(X10, seed=0, _copy_scale=0.0)
    assert r1.n_clusters == 12
    assert abs(r10.n_clusters - r1.n_clusters) <= 1
    assert off.n_clusters >= r1.n_clusters + 4, "control: without rule 0 the series are groups"
    assert r10.params["distinct_pictures_in_fit"] < len(X10) // 5


def test_picture_ids_join_variants_and_keep_distinct_photos_apart():
    X, _ = series_library(copies=10, classes=4)
    nb, sim = neighbour_graph(X, k=30, with_similarity=True)
    scale = copy_scale(sim)
    pic = picture_ids(X, nb[:, :10], scale)
    photo = np.arange(len(X)) // 10
    # every photo's 10 variants are one picture; distinct single photos are never joined
    assert all(len(np.unique(pic[photo == p])) == 1 for p in range(photo.max() + 1))
    singles = np.concatenate([np.arange(k * 200, k * 200 + 120) for k in range(4)])  # 12 photos x 10 per class
    assert len(np.unique(pic[singles])) == 48
    assert (picture_ids(X, nb[:, :10], 0.0) == np.arange(len(X))).all(), "scale 0: every row a picture"
    one = unit_rows(X[:10])
    assert count_pictures(one, scale) == 1 and count_pictures(unit_rows(X[singles[::10]]), scale) == 48


def test_without_copy_nodes_removes_nodes_of_few_pictures_and_keeps_rows():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(40, 8)) + 6 * np.eye(8)[i] for i in range(3)]).astype(np.float32)
    m = len(X)
    condensed = hdbscan.HDBSCAN(min_cluster_size=10, min_samples=5).fit(X).condensed_tree_.to_numpy()
    tree = GroupTree(condensed, m)
    assert without_copy_nodes(condensed, m, np.arange(m)) is condensed, "distinct rows: the tree is unchanged"
    leaves = tree.leaves()
    assert len(leaves) >= 3
    victim = leaves[0]
    picture = np.arange(m)
    picture[tree.rows(victim)] = 7          # that node's rows are one picture
    pruned = GroupTree(without_copy_nodes(condensed, m, picture), m)
    assert victim not in pruned.nodes
    assert len(pruned.rows(pruned.root)) == m, "no row is lost"
    parent = int(tree.parent[victim])
    holder = parent if parent in pruned.nodes else pruned.root
    assert np.isin(tree.rows(victim), pruned.rows(holder)).all()
    for v in pruned.nodes:
        kids = pruned.children.get(int(v), [])
        assert len(kids) != 1, "a node left with one child continues as that child"
        assert len(np.unique(picture[pruned.rows(v)])) >= 10 or v == pruned.root
