"""Library's operations behind the app's buttons, on real sample_data stores."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from organizer.library import Library
from organizer.store import StoreError

ROOT_SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def test_image_ids_are_checked(ui_store):
    lib = Library(ui_store)
    store = lib.store
    for bad in ["../etc/passwd", "", None, "0" * 31, "g" * 32, "a" * 32, "sunflower/image_0001.jpg"]:
        with pytest.raises(StoreError):
            lib.check_image_id(bad)
    known = store.present_image_ids()[0]
    assert lib.check_image_id(known.upper()) == known


def test_thumbnails_by_id_and_made_on_first_view(ui_copy):
    lib = Library(ui_copy)
    store = lib.store
    ids = store.present_image_ids()[:3]
    thumbs = lib.thumbnails(ids)
    assert set(thumbs) == set(ids) and all(t[:3] == b"\xff\xd8\xff" for t in thumbs.values())  # JPEG
    store.db.execute("UPDATE images SET thumbnail=NULL WHERE id=?", (ids[0],))
    again = lib.thumbnail(ids[0])
    assert again[:3] == b"\xff\xd8\xff"
    assert store.thumbnail(ids[0]) == again, "a thumbnail made on first view is stored"


def test_move_takes_the_target_name_or_drops_the_old_one(ui_copy):
    lib = Library(ui_copy)
    store = lib.store
    a, b, c = [i.id for i in lib.clusters() if i.id >= 0][:3]
    lib.name_cluster(a, "alpha")
    mover = lib.cluster_members(b)[:2]
    assert lib.move_to_cluster(mover, a) == 2
    assert all(store.cluster_assignments()[i][0] == a and store.labels()[i] == "alpha" for i in mover)
    assert lib.move_to_cluster(mover, c) == 2
    assert all(i not in store.labels() for i in mover), "an unnamed cluster leaves no stale name"
    with pytest.raises(StoreError):
        lib.move_to_cluster(mover, 9999)


def test_drop_and_label(ui_copy):
    lib = Library(ui_copy)
    store = lib.store
    cluster = lib.clusters()[0].id
    lib.name_cluster(cluster, "first")
    ids = lib.cluster_members(cluster)[:3]
    lib.drop_to_unsorted(ids)
    assert all(store.cluster_assignments()[i][0] == -1 and i not in store.labels() for i in ids)
    lib.label_ids(ids, "  hand  named ")
    assert {store.labels()[i] for i in ids} == {"hand named"}
    with pytest.raises(StoreError):
        lib.label_ids(ids, "unknown")


def test_rename_replaces_the_old_name_everywhere_in_the_cluster(ui_copy):
    lib = Library(ui_copy)
    cluster = lib.clusters()[0].id
    lib.name_cluster(cluster, "first")
    lib.label_ids(lib.cluster_members(cluster)[:1], "first")  # now a manual label
    lib.name_cluster(cluster, "second")
    assert {lib.store.labels()[i] for i in lib.cluster_members(cluster)} == {"second"}


def test_merge_and_split(ui_copy):
    lib = Library(ui_copy)
    store = lib.store
    infos = [i for i in lib.clusters() if i.id >= 0]
    a, b = infos[0], infos[1]
    target = lib.merge_clusters([a.id, b.id], name="both")
    assert len(lib.cluster_members(target)) == a.size + b.size
    assert {store.labels()[i] for i in lib.cluster_members(target)} == {"both"}
    with pytest.raises(StoreError):
        lib.merge_clusters([target])
    parts = lib.split_cluster(target)
    assert len(parts) >= 2 and target in parts
    assert sum(len(lib.cluster_members(p)) for p in parts) == a.size + b.size
    assert {store.labels()[i] for p in parts for i in lib.cluster_members(p)} == {"both"}, "names stay on images"
    n = store.db.execute("SELECT n_clusters FROM clusterings WHERE id=?", (store.current_clustering_id(),)).fetchone()
    assert n[0] == len([i for i in lib.clusters() if i.id >= 0])


def test_map_is_cached_in_the_store(ui_store):
    lib = Library(ui_store)
    store = lib.store
    cached = lib.map_coords(compute=False)  # the fixture computed it
    assert cached is not None
    ids, xy = cached
    assert ids == store.present_image_ids() and xy.shape == (len(ids), 2)
    assert (ui_store / "app" / "map2d.npz").exists()


def test_export_bytes_match_the_library(trained_store):
    lib = Library(trained_store)
    rows = list(csv.DictReader(io.StringIO(lib.export_bytes("csv").decode())))
    assert len(rows) == 160 and rows[0].keys() == set(Library.COLUMNS)
    assert len(json.loads(lib.export_bytes("json"))) == 160
    with pytest.raises(StoreError):
        lib.export_bytes("xml")


def test_search_by_bytes(ui_store):
    lib = Library(ui_store)
    data = (ROOT_SAMPLE / "sunflower" / "image_0001.jpg").read_bytes()
    hits = lib.similar_to_bytes(data, 5)
    assert sum(path.startswith("sunflower/") for path, _, _ in hits) >= 4
    with pytest.raises(StoreError, match="notes.jpg"):
        lib.similar_to_bytes(b"just some text", 5, name="notes.jpg")


def test_confusion_cells_and_review(trained_copy):
    lib = Library(trained_copy)
    store = lib.store
    model = lib.current_model()
    metrics = model.metrics
    cls = model.classes[0]
    diagonal = lib.confusion_images(model.id, cls, cls)
    assert diagonal and {store.labels()[i] for i in diagonal} == {cls}
    i = model.classes.index(cls)
    assert len(diagonal) == metrics["confusion"][i][i]
    queue = lib.review(5)
    sources = {r[0]: r[1] for r in store.db.execute("SELECT image_id, source FROM labels")}
    assert all(sources.get(r.image_id, "cluster") == "cluster" for r in queue), "no person checked them yet"
    if queue:
        lib.answer([queue[0].image_id], queue[0].predicted)
        assert store.labels()[queue[0].image_id] == queue[0].predicted
        assert lib.answers_since_training() >= 1
