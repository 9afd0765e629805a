"""History and undo: every change a person makes, through the CLI or the app's calls, is recorded
in the store and can be undone, in order, after a restart; older stores gain the table."""
from __future__ import annotations

import sqlite3

from support import run_cli
from organizer.library import Library
from organizer.store import SCHEMA_VERSION, Store


def state(store: Store) -> tuple:
    """Everything undo must restore: names, the current grouping, suggestions, the current model."""
    cid = store.current_clustering_id()
    labels = sorted(tuple(r) for r in store.db.execute("SELECT image_id, name, source FROM labels"))
    members = sorted(tuple(r) for r in store.db.execute(
        "SELECT image_id, cluster FROM cluster_members WHERE clustering_id=?", (cid,)))
    sugg = sorted(tuple(r) for r in store.db.execute(
        "SELECT cluster, names FROM cluster_suggestions WHERE clustering_id=?", (cid,)))
    n = store.db.execute("SELECT n_clusters FROM clusterings WHERE id=?", (cid,)).fetchone()
    model = store.current_model()
    return cid, labels, members, sugg, n and n[0], model and model["id"]


def test_every_app_change_undoes_in_order(store_copy):
    lib = Library(store_copy)
    store = lib.store
    real = [c.id for c in lib.clusters() if c.id >= 0]
    a, b, c = real[:3]
    path = store.primary_paths()[lib.cluster_members(c)[0]]
    steps = [
        ("name", lambda: lib.name_cluster(a, "alpha")),
        ("name", lambda: lib.name_cluster(b, "beta")),
        ("rename", lambda: lib.name_cluster(a, "alpha two")),
        ("move", lambda: lib.move_to_cluster(lib.cluster_members(b)[:3], a)),
        ("drop", lambda: lib.drop_to_unsorted(lib.cluster_members(a)[:2])),
        ("label", lambda: lib.label([path], "by hand")),
        ("merge", lambda: lib.merge_clusters([a, b])),
        ("split", lambda: lib.split_cluster(a if a in {i.id for i in lib.clusters()} else b)),
        ("regroup", lambda: lib.cluster(seed=1)),
    ]
    first = [e.id for e in lib.history(None)]  # the fixture's own `organizer cluster` is an entry too
    before = []
    for kind, step in steps:
        before.append(state(store))
        step()
        assert lib.history(1)[0].kind == kind, (kind, lib.history(1))
    assert state(store) != before[-1]
    assert [e.kind for e in lib.history(None) if e.id not in first] == [k for k, _ in reversed(steps)]
    for snapshot in reversed(before):
        lib.undo(1)
        assert state(store) == snapshot
    assert [e.id for e in lib.history(None)] == first
    assert len(lib.history(None, include_undone=True)) == len(steps) + len(first)


def test_cli_history_and_undo_survive_a_restart(store_copy):
    lib = Library(store_copy)
    cluster = next(c.id for c in lib.clusters() if c.id >= 0)
    members = set(lib.cluster_members(cluster))
    lib.close()
    run_cli("name", cluster, "first name", "--store", store_copy)
    run_cli("name", cluster, "ignored for hand labels", "--store", store_copy)  # cluster names only fill gaps
    out = run_cli("history", "--store", store_copy).stdout
    assert out.count("named cluster") == 2 and "first name" in out
    undone = run_cli("undo", "--store", store_copy).stdout
    assert "undid" in undone
    store = Store(store_copy, create=False)
    assert {store.labels().get(i) for i in members} == {"first name"}
    store.close()
    run_cli("undo", "--store", store_copy)
    store = Store(store_copy, create=False)
    assert not store.labels(), "the first naming is undone too"
    store.close()
    run_cli("undo", "--store", store_copy)  # the fixture's grouping
    proc = run_cli("undo", "--store", store_copy, check=False)
    assert proc.returncode != 0 and "nothing to undo" in proc.stderr
    assert "undone" in run_cli("history", "--all", "--store", store_copy).stdout


def test_an_older_store_gains_the_history_table(store_copy):
    db = sqlite3.connect(store_copy / "organizer.db")
    db.execute("DROP TABLE history")
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.commit()
    db.close()
    lib = Library(store_copy)
    assert lib.store.get_meta("schema_version") == str(SCHEMA_VERSION)
    cluster = next(c.id for c in lib.clusters() if c.id >= 0)
    lib.name_cluster(cluster, "after upgrade")
    assert lib.history(1)[0].summary.endswith("“after upgrade”")
    lib.undo()
    assert not lib.store.labels()
