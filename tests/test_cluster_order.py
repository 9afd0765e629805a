"""The groups depend on which photos a library holds, not on the order they were indexed in.

UMAP's seeded draw follows the order of its input rows, and a store's rows are in indexing order
(which classes came first, which decode process finished first). Two stores of the same photos,
filled in opposite orders, must group every photo the same way."""
from __future__ import annotations

import shutil

from support import SAMPLE
from organizer.library import Library

FIRST = ("airplanes", "Motorbikes", "watch", "Leopards")
SECOND = ("bonsai", "ketch", "grand_piano", "sunflower")


def _store_filled_in_order(tmp_path, name, parts):
    folder, store = tmp_path / f"photos-{name}", tmp_path / f"store-{name}"
    for part in parts:  # the same final folder, its classes arriving in this order
        for cls in part:
            shutil.copytree(SAMPLE / cls, folder / cls)
        lib = Library(store)
        lib.index(folder, backbone="efficientnet-lite0")
        lib.close()
    return store


def _grouping(store):
    lib = Library(store)
    try:
        rowid_order = [r[0] for r in lib.store.db.execute("SELECT id FROM images ORDER BY rowid")]
        lib.cluster(seed=0, suggest=False)
        groups = {i: c for i, (c, _) in lib.store.cluster_assignments().items()}
        tree = {(i, n) for i, n in lib.store.db.execute(
            "SELECT image_id, node FROM cluster_members WHERE clustering_id=?", (lib.store.current_clustering_id(),))}
        return rowid_order, groups, tree
    finally:
        lib.close()


def test_the_same_photos_indexed_in_another_order_make_the_same_groups(tmp_path):
    order_a, groups_a, tree_a = _grouping(_store_filled_in_order(tmp_path, "a", (FIRST, SECOND)))
    order_b, groups_b, tree_b = _grouping(_store_filled_in_order(tmp_path, "b", (SECOND, FIRST)))
    assert sorted(order_a) == sorted(order_b) and order_a != order_b   # same photos, other row order
    assert len(set(groups_a.values()) - {-1}) >= 4                       # a real grouping, not all unsorted
    assert groups_a == groups_b
    assert tree_a == tree_b
