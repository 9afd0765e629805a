"""`organizer export --format folders`: one folder per label of links, updated in place on re-runs."""
from __future__ import annotations

import csv
import hashlib
import os

import pytest

from interop_support import trained_store, with_library_copy
from organizer.library import Library
from support import run_cli, truth


@pytest.fixture(scope="module")
def library(sample_store, tmp_path_factory):
    store, photos = with_library_copy(trained_store(sample_store, tmp_path_factory.mktemp("trained")),
                                      tmp_path_factory.mktemp("folders"))
    # one image with neither a name nor a prediction, one the model was unsure about
    lib = Library(store, create=False)
    try:
        paths = lib.store.primary_paths()
        by_path = {p: i for i, p in paths.items()}
        lonely, unsure = by_path["ketch/image_0001.jpg"], by_path["ketch/image_0002.jpg"]
        lib.store.remove_labels([lonely, unsure])
        lib.store.db.execute("DELETE FROM predictions WHERE image_id=?", (lonely,))
        lib.store.db.execute("UPDATE predictions SET label='unknown' WHERE image_id=?", (unsure,))
    finally:
        lib.close()
    return store, photos


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def tree(out):
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_symlink() or p.is_file()} - {
        ".organizer-folders.json"}


def test_folders_by_label_and_rerun_updates(library, tmp_path):
    store, photos = library
    before = digest(photos)
    out = tmp_path / "by-label"
    printed = run_cli("export", "--store", store, "--format", "folders", "--out", out).stdout
    assert "160 added" in printed
    made = tree(out)
    assert len(made) == 160
    assert "unsorted/image_0001.jpg" in made and "unknown/image_0002.jpg" in made
    run_cli("export", "--store", store, "--format", "csv", "--out", tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    right = 0
    for rel in made:
        link = out / rel
        assert link.is_symlink() and link.resolve().is_relative_to(photos.resolve())
        folder, name = rel.split("/", 1)
        src = link.resolve().relative_to(photos.resolve()).as_posix()
        assert folder == (rows[src]["label"] or rows[src]["predicted"] or "unsorted"), rel
        # the file's own name, or (two of that name in one folder) its path in the library
        assert name in (src.rsplit("/", 1)[1], src.replace("/", " - "))
        right += folder == truth(src)
    assert right >= 150  # the folders mean something: named clusters put most images with their class
    assert digest(photos) == before  # originals untouched

    # a person's own file in the export stays; a relabeled image moves; nothing else changes
    (out / "watch" / "notes.txt").write_text("mine")
    run_cli("label", "sunflower/image_0003.jpg", "--as", "watch", "--store", store)
    again = run_cli("export", "--store", store, "--format", "folders", "--out", out).stdout
    # watch/ now holds two image_0003.jpg: both take their library path as name, the rest stays
    assert "2 added, 2 removed, 158 already there" in again
    now = tree(out)
    assert {"watch/sunflower - image_0003.jpg", "watch/watch - image_0003.jpg"} <= now
    assert not {"sunflower/image_0003.jpg", "watch/image_0003.jpg"} & now
    assert (out / "watch" / "notes.txt").read_text() == "mine"

    # switching to copies replaces every link by an independent file
    run_cli("export", "--store", store, "--format", "folders", "--out", out, "--link", "copy")
    copied = out / "watch" / "sunflower - image_0003.jpg"
    assert not copied.is_symlink() and copied.read_bytes() == (photos / "sunflower" / "image_0003.jpg").read_bytes()
    assert len(tree(out)) == 161  # 160 copies and the person's note
    assert digest(photos) == before


def test_hard_links_and_refusals(library, tmp_path):
    store, photos = library
    out = tmp_path / "hard"
    run_cli("export", "--store", store, "--format", "folders", "--out", out, "--link", "hard")
    some = next(p for p in out.rglob("*.jpg"))
    assert os.stat(some).st_nlink >= 2
    inside = run_cli("export", "--store", store, "--format", "folders", "--out", photos / "sorted", check=False)
    assert inside.returncode == 2 and "overlap" in inside.stderr and not (photos / "sorted").exists()
    bad = run_cli("export", "--store", store, "--format", "folders", "--out", tmp_path / "x", "--link", "soft",
                  check=False)
    assert bad.returncode == 2 and "--link" in bad.stderr
