"""A store made before the restructure of issue 12 still opens and works.

tests/fixtures/store-v3 was made with main at 944736e (schema 3) through the CLI: 15 photos of
4 classes indexed, clustered (3 groups), the groups named, one hand label, one tag, two models
(the second current), predictions. Its photos travel beside it; the copy is pointed at them
as a user's store is when the folder has not moved."""
from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from support import ROOT, run_cli

FIXTURE = ROOT / "tests" / "fixtures" / "store-v3"


@pytest.fixture
def old_store(tmp_path):
    shutil.copytree(FIXTURE / "photos", tmp_path / "photos")
    shutil.copytree(FIXTURE / "store", tmp_path / "store")
    db = sqlite3.connect(tmp_path / "store" / "organizer.db")
    with db:
        db.execute("UPDATE meta SET value=? WHERE key='library_root'", (str(tmp_path / "photos"),))
    db.close()
    return tmp_path / "store"


def test_old_store_keeps_everything_and_works(old_store):
    from organizer import Library

    lib = Library(old_store, create=False)
    try:
        status = lib.status()
        assert status.images == 15 and status.labeled == 15
        assert status.model is not None and status.model.id == 2
        labels = lib.store.labels()
        assert sorted(set(labels.values())) == ["airplane", "bonsai", "sunflower"]
        groups = [c for c in lib.clusters() if c.id >= 0]
        assert sorted(c.label for c in groups) == ["airplane", "bonsai", "sunflower"]
        assert [m.id for m in lib.models()] == [1, 2] and lib.current_model().id == 2
        assert lib.predict() == 15
        assert len(lib.review(5)) == 5
        assert [h.kind for h in lib.history()] == ["label", "name", "name", "name", "regroup"]  # by the old code
    finally:
        lib.close()
    # the CLI: re-indexing finds every file unchanged; undo, train and export work on it
    out = run_cli("index", old_store.parent / "photos", "--store", old_store).stdout
    assert "15 unchanged" in out, out
    run_cli("undo", "2", "--store", old_store)  # the hand label, then cluster 2's name "sunflower"
    lib = Library(old_store, create=False)
    try:
        assert "sunflower" not in lib.store.labels().values() and lib.status().labeled == 10
    finally:
        lib.close()
    run_cli("train", "--store", old_store)
    out_file = old_store.parent / "out.json"
    run_cli("export", "--format", "json", "--out", out_file, "--store", old_store)
    rows = json.loads(out_file.read_text())
    assert len(rows) == 15 and {r["label"] for r in rows} == {"airplane", "bonsai", ""}
    assert {r["predicted"] for r in rows} == {"airplane", "bonsai"}
    assert any(r["tags"] == "yellow" for r in rows)
