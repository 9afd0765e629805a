"""15. Disk full: the store lives on a real 24 MB tmpfs (mounted for the test; skipped where
mounting is not allowed). A write that fails with ENOSPC gives one clean line, the store stays
consistent, the previous search index stays in place, and a rerun after freeing space finishes.
With no byte left, SQLite fails already opening the WAL (an I/O error, not SQLITE_FULL); the
store reports that as a full disk too when the filesystem has (almost) no space left."""
from __future__ import annotations

import errno
import shutil

from support import run_cli

from .helpers import check_consistent, copy_photos, new_store, summary
from .mounts import tmpfs


def fill(path) -> None:
    """Write until the filesystem refuses: the next write anywhere on it fails with ENOSPC."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_disk_full_during_index(tmp_path, sample_store):
    folder = tmp_path / "photos"
    copy_photos(folder, per_class=2, classes=4)
    with tmpfs(tmp_path / "disk", "24M") as disk:
        store = new_store(sample_store, disk / "store")
        run_cli("index", folder, "--store", store, "--backbone", "efficientnet-lite0")
        run_cli("similar", "airplanes/image_0001.jpg", "--store", store)  # the search index cache exists
        index_bytes = (store / "index.faiss").read_bytes()
        before = check_consistent(store)
        copy_photos(folder, per_class=4, classes=8)  # 24 more photos to embed
        fill(disk / "filler")
        proc = run_cli("index", folder, "--store", store, check=False)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert "disk full while writing" in proc.stderr and "nothing already saved was lost" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        # (with no byte free SQLite cannot even open the WAL index to read, so look after freeing)
        (disk / "filler").unlink()
        assert check_consistent(store) == before
        assert (store / "index.faiss").read_bytes() == index_bytes
        assert not list(store.rglob("*.tmp"))
        out = run_cli("index", folder, "--store", store)
        assert summary(out.stdout)["embedded"] == 24
        assert len(check_consistent(store)["files"]) == 32
        shutil.rmtree(store)
