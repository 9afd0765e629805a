"""Fixtures for the app tests: stores built once per session from the root `sample_store`."""
from __future__ import annotations

import collections
import shutil
from pathlib import Path

import pytest
from organizer.library import Library

from support import copy_of

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "organizer" / "app" / "app.py"


def name_like_a_person(store) -> dict[int, str]:
    """Name each cluster after the folder most of its images come from (what a person would type)."""
    lib = Library(store)
    names = {}
    for info in lib.clusters(samples=100_000):
        if info.id < 0:
            continue
        top, count = collections.Counter(p.split("/")[0] for p in info.sample_paths).most_common(1)[0]
        if 2 * count >= info.size:
            lib.name_cluster(info.id, top)
            names[info.id] = top
    lib.close()
    return names


@pytest.fixture(scope="session")
def name_clusters():
    return name_like_a_person


@pytest.fixture(scope="session")
def ui_store(sample_store, tmp_path_factory) -> Path:
    """sample_data indexed and clustered, with the 2-D map already cached (UMAP runs once per session)."""
    dest = tmp_path_factory.mktemp("ui-store") / "store"
    shutil.copytree(sample_store, dest)
    lib = Library(dest)
    lib.map_coords()
    lib.close()
    return dest


@pytest.fixture(scope="session")
def trained_store(ui_store, tmp_path_factory) -> Path:
    """ui_store with every cluster named and a model trained through the app's own call."""
    dest = tmp_path_factory.mktemp("trained-store") / "store"
    shutil.copytree(ui_store, dest)
    name_like_a_person(dest)
    lib = Library(dest)
    lib.train()
    lib.close()
    return dest


TREE_CLASSES = ("bonsai", "grand_piano", "sunflower")  # 312 photos whose clusters have sub-groups


@pytest.fixture(scope="session")
def tree_store(tmp_path_factory) -> Path:
    """Three caltech101-8 classes indexed and clustered through the CLI: a library whose clusters have
    sub-groups (sample_data's 20 per class are too few for any). Skipped without ../shared."""
    from support import SHARED, indexed_and_clustered

    source = SHARED / "datasets" / "caltech101-8"
    if not source.is_dir():
        pytest.skip(f"{source} is absent (a user's clone has no ../shared)")
    folder = tmp_path_factory.mktemp("tree-photos")
    for name in TREE_CLASSES:
        shutil.copytree(source / name, folder / name)
    store = tmp_path_factory.mktemp("tree-store") / "store"
    return indexed_and_clustered(folder, store)


@pytest.fixture
def tree_copy(tree_store, tmp_path) -> Path:
    return copy_of(tree_store, tmp_path)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("empty-store") / "store"


@pytest.fixture
def ui_copy(ui_store, tmp_path) -> Path:
    return copy_of(ui_store, tmp_path)


@pytest.fixture
def trained_copy(trained_store, tmp_path) -> Path:
    return copy_of(trained_store, tmp_path)


@pytest.fixture
def open_app(monkeypatch):
    """open_app(store, page=None, params=None) -> a run AppTest on that store and page."""
    from streamlit.testing.v1 import AppTest

    def make(store, page: str | None = None, params: dict | None = None):
        monkeypatch.setenv("ORGANIZER_STORE", str(store))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params.update(params or {})
        at.run()
        if page:
            at.switch_page(page).run()
        return at

    return make
