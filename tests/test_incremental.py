"""Re-indexing is incremental: unchanged files are not read, renames keep vectors and labels."""
from __future__ import annotations

import os
import shutil

from support import SAMPLE, run_cli
from organizer.library import Library


def index(folder, store, *extra):
    return run_cli("index", folder, "--store", store, "--backbone", "efficientnet-lite0", *extra).stdout


def test_incremental_rename_delete_and_change(photo_folder, tmp_path):
    store = tmp_path / "s"
    assert "12 embedded" in index(photo_folder, store)
    # the command left through the fast exit (organizer/cli/fastexit.py): its summary came out whole
    # and the store was closed first, so no write-ahead log is left behind
    assert not (store / "organizer.db-wal").exists()
    assert "0 embedded" in index(photo_folder, store) and "12 unchanged" in index(photo_folder, store)

    run_cli("label", "watch/image_0001.jpg", "--as", "wristwatch", "--store", store)
    lib = Library(store)
    before = lib.store.path_to_image_id("watch/image_0001.jpg")
    shards_before = len(list((store / "vectors").glob("*.f16")))
    lib.close()

    (photo_folder / "moved").mkdir()
    os.rename(photo_folder / "watch" / "image_0001.jpg", photo_folder / "moved" / "renamed.jpg")
    out = index(photo_folder, store)
    assert "0 embedded" in out and "1 reused" in out and "1 missing" in out
    lib = Library(store)
    assert lib.store.path_to_image_id("moved/renamed.jpg") == before
    assert lib.store.labels()[before] == "wristwatch"
    assert len(list((store / "vectors").glob("*.f16"))) == shards_before  # nothing re-embedded
    status = dict(lib.store.db.execute("SELECT path, status FROM files"))
    assert status["watch/image_0001.jpg"] == "missing"  # remembered, not forgotten
    lib.close()

    # a changed file is re-embedded; a new copy of a known file is not
    src = photo_folder / "airplanes" / "image_0001.jpg"
    shutil.copy(photo_folder / "sunflower" / "image_0001.jpg", src)
    shutil.copy(photo_folder / "sunflower" / "image_0002.jpg", photo_folder / "copy.jpg")
    out = index(photo_folder, store)
    assert "0 embedded" in out and "2 reused" in out


def test_emptied_folder_does_not_wipe_the_store(photo_folder, tmp_path):
    store = tmp_path / "s"
    index(photo_folder, store)
    moved = tmp_path / "elsewhere"
    shutil.move(photo_folder, moved)
    photo_folder.mkdir()
    proc = run_cli("index", photo_folder, "--store", store, check=False)
    assert proc.returncode != 0 and "--allow-missing" in proc.stderr
    lib = Library(store)
    assert lib.store.counts()["ok"] == 12
    lib.close()


def test_backbones_are_never_mixed(photo_folder, tmp_path):
    store = tmp_path / "s"
    index(photo_folder, store)
    proc = run_cli("index", photo_folder, "--store", store, "--backbone", "clip:ViT-B-32:/nonexistent.safetensors",
                   check=False)
    assert proc.returncode != 0 and "never mixed" in proc.stderr


def test_reused_counts_copies_in_one_commit_and_not_touched_files(tmp_path):
    """Identical new files committed together: one is embedded, the others are reused. A file
    read again whose content did not change (touched) is unchanged, not reused."""
    folder = tmp_path / "dups"
    folder.mkdir()
    src = sorted((SAMPLE / "watch").glob("*.jpg"))[:3]
    for i in range(4):
        for j, s in enumerate(src):
            shutil.copy(s, folder / f"copy{i}_{j}.jpg")
    store = tmp_path / "s"
    out = index(folder, store)
    assert "12 files: 3 embedded, 9 reused, 0 unchanged" in out
    os.utime(folder / "copy0_0.jpg", ns=(1, 1))          # touched: read again, same content
    shutil.copy(src[0], folder / "new_copy.jpg")         # a new copy of known content
    out = index(folder, store)
    assert "13 files: 0 embedded, 1 reused, 12 unchanged" in out
