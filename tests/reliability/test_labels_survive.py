"""12. Labels survive: re-clustering with other parameters, re-indexing, moving or renaming
files never drops a name a person gave."""
from __future__ import annotations

import os

import pytest

from support import run_cli

from organizer.library import Library

from .helpers import copy_photos


def labels_by_image(store):
    lib = Library(store)
    try:
        return lib.store.labels(), {r[0]: r[1] for r in lib.store.db.execute("SELECT image_id, source FROM labels")}
    finally:
        lib.close()


@pytest.mark.slow  # three clusterings (numba warm-up): about a minute; renames alone: tests/test_incremental.py
def test_names_survive_reclustering_reindexing_and_moves(tmp_path, empty_store):
    folder = tmp_path / "photos"
    copy_photos(folder, per_class=4, classes=3)
    store = empty_store
    run_cli("index", folder, "--store", store, "--backbone", "efficientnet-lite0")
    run_cli("cluster", "--store", store, "--min-cluster-size", "3")
    run_cli("name", "0", "group zero", "--store", store)
    run_cli("label", "airplanes/image_0001.jpg", "--as", "plane", "--store", store)
    before, sources = labels_by_image(store)
    assert "plane" in before.values() and "group zero" in before.values()

    lib = Library(store)  # re-cluster twice with other parameters (in-process: one numba warm-up)
    try:
        for size, seed in ((2, 7), (5, 1)):
            lib.cluster(min_cluster_size=size, seed=seed, suggest=False)
    finally:
        lib.close()
    os.makedirs(folder / "elsewhere" / "deeper")
    for i, path in enumerate(sorted(folder.rglob("*.jpg"))):  # move and rename every file
        os.rename(path, folder / "elsewhere" / "deeper" / f"renamed_{i}.jpg")
    run_cli("index", folder, "--store", store, "--allow-missing")
    run_cli("index", folder, "--store", store)
    after, after_sources = labels_by_image(store)
    assert after == before and after_sources == sources
    exported = (tmp_path / "e.csv")
    run_cli("export", "--format", "csv", "--out", exported, "--store", store)
    text = exported.read_text()
    assert "elsewhere/deeper/" in text and "plane" in text and "group zero" in text
