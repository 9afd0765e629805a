"""1. Originals untouched: hash, size, mtime and mode of every file are identical after index,
cluster, train, predict and export; a read-only library works."""
from __future__ import annotations

import hashlib
import os
import stat

from support import run_cli


def fingerprint(folder):
    out = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(folder))] = (digest, st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def test_read_only_library_is_never_modified(photo_folder, tmp_path):
    for path in [*photo_folder.rglob("*"), photo_folder]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = fingerprint(photo_folder)
    store = tmp_path / "s"
    try:
        run_cli("index", photo_folder, "--store", store, "--backbone", "efficientnet-lite0")
        run_cli("cluster", "--store", store, "--min-cluster-size", "3")
        run_cli("label", "watch/image_0001.jpg", "watch/image_0002.jpg", "--as", "watch", "--store", store)
        run_cli("label", "sunflower/image_0001.jpg", "sunflower/image_0002.jpg", "--as", "sunflower", "--store", store)
        run_cli("train", "--store", store)
        run_cli("predict", "--store", store)
        run_cli("predict", photo_folder / "watch" / "image_0003.jpg", "--store", store)
        run_cli("similar", "watch/image_0001.jpg", "--store", store)
        run_cli("export", "--store", store, "--format", "csv", "--out", tmp_path / "e.csv")
        run_cli("index", photo_folder, "--store", store)
        assert fingerprint(photo_folder) == before
        assert not any(p.name.startswith(".") for p in photo_folder.rglob("*"))
    finally:
        for path in [photo_folder, *photo_folder.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert os.access(photo_folder, os.W_OK)
