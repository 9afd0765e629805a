"""Review asks first about the parts of a named group that the group tree tells apart: a group
holding a part of another kind got one name for all of it, and one answer settles the part."""
from __future__ import annotations

import collections

import numpy as np

from organizer.learn.review import part_checks, with_checks_first
from organizer.library import Library
from support import truth


def test_part_checks_one_per_group_biggest_share_first_most_typical_member():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4]
    sizes = (5, 12, 8, 6)
    X = np.concatenate([c + 0.1 * rng.normal(size=(n, 8)) for c, n in zip(centres, sizes)])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    # group 0 = parts 4 (5 rows) and 7 (12 rows) plus 8 rows in no part; group 1 = part 9 (6 rows) + 40 more
    parts = np.repeat([4, 7, -1, 9], sizes)
    groups = np.repeat([0, 0, 0, 1], sizes)
    groups = np.concatenate([groups, np.ones(40, np.int64)])
    parts = np.concatenate([parts, np.full(40, -1)])
    X = np.concatenate([X, np.tile(X[-1:], (40, 1))])
    rows = part_checks(X, parts, groups, limit=5)
    assert [parts[r] for r in rows] == [7, 9], "one part per group (its biggest), the bigger share first"
    for r in rows:
        members = np.flatnonzero(parts == parts[r])
        centre = X[members].mean(axis=0)
        assert r == members[np.argmax(X[members] @ centre)], "the part's most typical member"
    assert len(part_checks(X, parts, groups, limit=1)) == 1
    assert len(part_checks(X, np.full(len(X), -1), groups, limit=5)) == 0
    assert with_checks_first(np.array([9, 3]), np.array([3, 1, 2, 9, 5]), 4).tolist() == [9, 3, 1, 2]


def _mixed_group(store):
    """Cluster B's images moved into cluster A, which is named after A's class; the tree gets two
    sub-groups under A: A's own images and B's."""
    lib = Library(store)
    paths = lib.paths()
    clusters = sorted((c for c in lib.clusters(samples=0) if c.id >= 0), key=lambda c: -c.size)
    a, b = clusters[0], clusters[1]
    own, other = lib.cluster_members(a.id), lib.cluster_members(b.id)
    other = other[: min(len(other), len(own)) - 3]  # strictly smaller: the name came from A's part
    cls_a = collections.Counter(truth(paths[i]) for i in own).most_common(1)[0][0]
    db, cid = lib.store.db, lib.store.current_clustering_id()
    top = 1 + max(r[0] for r in db.execute("SELECT node FROM cluster_nodes WHERE clustering_id=?", (cid,)))
    with lib.store.transaction():
        db.execute("DELETE FROM cluster_nodes WHERE clustering_id=? AND parent=?", (cid, a.id))
        db.executemany("INSERT INTO cluster_nodes (clustering_id, node, parent, level, agreement) VALUES (?,?,?,?,NULL)",
                       [(cid, top, a.id, "sub-group"), (cid, top + 1, a.id, "sub-group")])
        db.executemany("UPDATE cluster_members SET cluster=?, node=? WHERE clustering_id=? AND image_id=?",
                       [(a.id, top, cid, i) for i in own] + [(a.id, top + 1, cid, i) for i in other])
    lib.name_cluster(a.id, cls_a)
    others = [c for c in clusters[2:]]
    for c in others:  # the rest named as a person would, so the model has classes to learn
        m = lib.cluster_members(c.id)
        lib.name_cluster(c.id, collections.Counter(truth(paths[i]) for i in m).most_common(1)[0][0])
    return lib, own, other


def test_a_part_of_another_kind_inside_a_named_group_is_asked_about_first(store_copy):
    lib, own, other = _mixed_group(store_copy)
    lib.train()
    queue = [r.image_id for r in lib.review(10)]
    assert queue[0] in other, "the unchecked part's most typical image comes first"
    assert not set(queue[:1]) & set(own), "the part the name was given by is not asked about first"
    db = lib.store.db
    from organizer.learn.model import PERSON_SOURCES

    def parts_now():
        ids = lib.store.present_image_ids()
        rows = {r[0]: (r[1], r[2]) for r in db.execute("SELECT image_id, name, source FROM labels")}
        person = {i for i, (_, src) in rows.items() if src in PERSON_SOURCES}
        return dict(zip(ids, lib._unchecked_parts(ids, rows, person)))

    before = parts_now()
    assert all(before[i] >= 0 for i in other) and all(before[i] < 0 for i in own)
    # once a person answered for the part, it is not asked about again; the part the name was
    # given by is asked about then (a person may have named the group after the smaller part)
    lib.label_ids([queue[0]], "somethingelse")
    after = parts_now()
    assert all(after[i] < 0 for i in other) and all(after[i] >= 0 for i in own)
    lib.label_ids([own[0]], "anything")
    assert all(v < 0 for v in parts_now().values()), "every part checked: nothing left to ask first"


def test_no_tree_no_checks(store_copy):
    """Control: a clustering whose groups have no parts asks nothing first by that rule."""
    lib = Library(store_copy)
    db, cid = lib.store.db, lib.store.current_clustering_id()
    with lib.store.transaction():
        db.execute("DELETE FROM cluster_nodes WHERE clustering_id=? AND level='sub-group'", (cid,))
    from organizer.learn.model import PERSON_SOURCES
    ids = lib.store.present_image_ids()
    rows = {r[0]: (r[1], r[2]) for r in db.execute("SELECT image_id, name, source FROM labels")}
    person = {i for i, (_, src) in rows.items() if src in PERSON_SOURCES}
    assert (lib._unchecked_parts(ids, rows, person) == -1).all()
