"""A trained store for the interop tests (sidecars, folders, API, portable model, watch).

Built once per test session from the session `sample_store` (copied, never changed): every
cluster named after the true class most of its members have, trained, predicted. Each test
module asks for it through its own fixture and copies it again before changing anything."""
from __future__ import annotations

import collections
import os
import shutil
from pathlib import Path

from support import free_port, truth  # noqa: F401  (free_port is used by the tests importing it)

_BUILT: dict[str, Path] = {}


def trained_store(sample_store: Path, base: Path) -> Path:
    key = str(sample_store)
    if key in _BUILT:
        return _BUILT[key]
    from organizer.library import Library

    store = base / "trained-store"
    shutil.copytree(sample_store, store)
    lib = Library(store, create=False)
    try:
        for c in lib.clusters(samples=10_000):
            if c.id < 0:
                continue
            top, count = collections.Counter(truth(p) for p in c.sample_paths).most_common(1)[0]
            if 2 * count >= len(c.sample_paths):
                lib.name_cluster(c.id, top)
        lib.train()
        lib.predict()
    finally:
        lib.close()
    _BUILT[key] = store
    return store


def copy_store(store: Path, dest: Path) -> Path:
    shutil.copytree(store, dest)
    return dest


def child_env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def with_library_copy(store: Path, dest: Path) -> tuple[Path, Path]:
    """A copy of `store` whose library is a copy of its image folder (same files, same times), so a
    test may write sidecars beside the originals or add files without touching sample_data."""
    from organizer.store import Store

    new_store = copy_store(store, dest / "store")
    s = Store(new_store, create=False)
    try:
        photos = dest / "photos"
        shutil.copytree(s.library_root, photos, ignore=shutil.ignore_patterns("*.md"))
        s.set_meta("library_root", str(photos.resolve()))
    finally:
        s.close()
    return new_store, photos
