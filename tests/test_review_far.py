"""Review once clusters are named: an image the clustering put in the wrong group (so it carries
that group's name) sits far from the group and is offered for review; correct members are not."""
from __future__ import annotations

import numpy as np

from organizer.learn.review import far_from_group
from organizer.library import Library
from organizer.store.vectors import load_vectors
from support import truth


def _named(store):
    lib = Library(store)
    paths = lib.paths()
    for c in [c for c in lib.clusters(samples=0) if c.id >= 0]:
        members = lib.cluster_members(c.id)
        lib.name_cluster(c.id, max({truth(paths[i]) for i in members}, key=lambda t: sum(
            truth(paths[i]) == t for i in members)))
    return lib, paths


def test_far_from_group_flags_strays_not_members(store_copy):
    lib, paths = _named(store_copy)
    db = lib.store.db
    cid = lib.store.current_clustering_id()
    groups = [c for c in lib.clusters(samples=0) if c.id >= 0 and c.size >= 15]
    a, b = groups[0], groups[1]
    strays = lib.cluster_members(a.id)[:3]  # as if the clustering had put three of A's images in B
    with lib.store.transaction():
        db.executemany("UPDATE cluster_members SET cluster=? WHERE clustering_id=? AND image_id=?",
                       [(b.id, cid, i) for i in strays])
    lib.store.set_labels(strays, b.label, "cluster")
    ids, X = load_vectors(lib.store)
    cluster_of = lib.store.cluster_assignments()
    far = far_from_group(X, np.array([cluster_of.get(i, (-1, 0))[0] for i in ids]))
    flagged = {i for i, f in zip(ids, far) if f}
    assert set(strays) <= flagged, "every stray is far from the group it was put in"
    wrongly = [i for i in flagged if i not in strays and truth(paths[i]) == lib.store.labels()[i]]
    assert len(wrongly) <= 0.05 * len(ids), f"{len(wrongly)} correctly named images flagged"

    lib.train()
    queue = [r.image_id for r in lib.review(24)]
    assert queue[0] in strays and len(set(strays) & set(queue)) >= 2, "the strays come first (diversity may skip one)"
    # control: the same selection without the name's doubt and the outlier boost finds none of them
    from organizer.learn.model import PERSON_SOURCES, load_model
    from organizer.learn.review import held_out_proba, select

    model = load_model(lib.store)
    proba = held_out_proba(lib.store, ids, model.predict_proba(X), model.classes)
    counts = np.zeros(len(model.classes))
    assert not db.execute(f"SELECT COUNT(*) FROM labels WHERE source IN {PERSON_SOURCES}").fetchone()[0]
    plain = {ids[k] for k in select(X, proba, counts, 24)}
    assert len(set(strays) & plain) < len(set(strays) & set(queue))
