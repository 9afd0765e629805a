"""9. Re-indexing a folder that was emptied, unmounted or removed never wipes the store: it
refuses when most files would disappear, unless told to (--allow-missing)."""
from __future__ import annotations

import shutil

from support import run_cli

from .helpers import check_consistent, copy_photos, summary
from .mounts import tmpfs, unmount


def indexed(folder, store):
    copy_photos(folder, per_class=2, classes=4)
    run_cli("index", folder, "--store", store, "--backbone", "efficientnet-lite0")
    run_cli("label", "airplanes/image_0001.jpg", "--as", "plane", "--store", store)
    return check_consistent(store)


def test_emptied_folder_is_refused_then_allowed(tmp_path, empty_store):
    folder = tmp_path / "photos"
    before = indexed(folder, empty_store)
    shutil.move(folder, tmp_path / "moved")
    folder.mkdir()
    proc = run_cli("index", folder, "--store", empty_store, check=False)
    assert proc.returncode != 0 and "8 of 8 indexed files are gone" in proc.stderr
    assert "--allow-missing" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert check_consistent(empty_store) == before  # nothing changed
    # told to, it marks them missing (remembered with their labels, not forgotten)
    proc = run_cli("index", folder, "--store", empty_store, "--allow-missing", check=False)
    assert summary(proc.stdout)["missing"] == 8
    shutil.rmtree(folder)
    shutil.move(tmp_path / "moved", folder)
    out = run_cli("index", folder, "--store", empty_store)
    assert summary(out.stdout)["embedded"] == 0 and check_consistent(empty_store) == before
    run_cli("export", "--format", "json", "--out", tmp_path / "e.json", "--store", empty_store)
    assert "plane" in (tmp_path / "e.json").read_text()


def test_removed_folder_is_refused(tmp_path, empty_store):
    folder = tmp_path / "photos"
    before = indexed(folder, empty_store)
    shutil.move(folder, tmp_path / "gone")
    proc = run_cli("index", folder, "--store", empty_store, check=False)
    assert proc.returncode != 0 and "folder not found" in proc.stderr
    assert check_consistent(empty_store) == before


def test_unmounted_disk_is_refused(tmp_path, empty_store):
    """A real mount point: indexed while mounted, re-indexed after the disk went away."""
    mount = tmp_path / "disk"
    with tmpfs(mount, "16M"):
        before = indexed(mount / "photos", empty_store)
        unmount(mount)
        (mount / "photos").mkdir()  # what a mount point often looks like when nothing is mounted
        proc = run_cli("index", mount / "photos", "--store", empty_store, check=False)
        assert proc.returncode != 0 and "unmounted or emptied folder?" in proc.stderr
        assert check_consistent(empty_store) == before


def test_most_but_not_all_gone_is_refused(tmp_path, empty_store):
    folder = tmp_path / "photos"
    before = indexed(folder, empty_store)
    for path in sorted(folder.rglob("*.jpg"))[:5]:  # 5 of 8: more than half
        path.unlink()
    proc = run_cli("index", folder, "--store", empty_store, check=False)
    assert proc.returncode != 0 and "5 of 8" in proc.stderr
    assert check_consistent(empty_store) == before
