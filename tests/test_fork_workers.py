"""Decode processes start by fork when the indexing process has a single thread, by spawn when it
has more (a threaded program, the app): both give the same store, vectors included, and a forked
worker never keeps the store's index lock."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from support import ROOT, run_cli

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")

THREADED = textwrap.dedent("""
    import sys, threading
    from organizer import Library
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()  # a threaded program calling index
    lib = Library(sys.argv[2], create=True)
    report = lib.index(sys.argv[1], backbone="efficientnet-lite0")
    stop.set()
    print(report.embedded, report.errors, report.start_method)
""")


def _vectors(store) -> dict[str, np.ndarray]:
    from organizer.store import Store
    from organizer.store.vectors import load_vectors

    with Store(store, create=False) as s:
        ids, X = load_vectors(s)
        paths = dict(s.db.execute("SELECT image_id, path FROM files WHERE status='ok'"))
    return {paths[i]: x for i, x in zip(ids, X)}


def test_single_threaded_cli_forks_and_a_threaded_caller_spawns_alike(photo_folder, tmp_path):
    (photo_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ORGANIZER_PROFILE": str(tmp_path / "cli.json")}
    run_cli("index", photo_folder, "--store", tmp_path / "forked", "--backbone", "efficientnet-lite0", env=env)
    profile = json.loads((tmp_path / "cli.json").read_text())
    assert profile["start_method"] == "fork"
    assert profile["embedded"] == 12

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", THREADED, str(photo_folder), str(tmp_path / "spawned")],
                         capture_output=True, text=True, timeout=600, env=env, check=True).stdout.split()
    assert out == ["12", "1", "spawn"]

    forked, spawned = _vectors(tmp_path / "forked"), _vectors(tmp_path / "spawned")
    assert sorted(forked) == sorted(spawned) and len(forked) == 12
    for path in forked:
        np.testing.assert_allclose(forked[path], spawned[path], atol=1e-6)
    from organizer.store import Store

    for name in ("forked", "spawned"):  # the bad file is skipped and recorded, either way
        with Store(tmp_path / name, create=False) as s:
            assert s.db.execute("SELECT status FROM files WHERE path='broken.jpg'").fetchone()[0] == "error"


def test_spawn_can_be_forced(photo_folder, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ORGANIZER_PROFILE": str(tmp_path / "p.json"),
           "ORGANIZER_START_METHOD": "spawn"}
    run_cli("index", photo_folder, "--store", tmp_path / "store", "--backbone", "efficientnet-lite0", env=env)
    profile = json.loads((tmp_path / "p.json").read_text())
    assert profile["start_method"] == "spawn" and profile["embedded"] == 12


def test_a_forked_child_drops_the_index_lock_but_the_parent_keeps_it(tmp_path):
    from organizer.ingest.indexer import StoreLock
    from organizer.store import Store

    store = Store(tmp_path / "store")
    try:
        with StoreLock(store) as lock:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: its copy of the lock's descriptor must be gone
                try:
                    os.fstat(lock.fd)
                    os.write(w, b"open")
                except OSError:
                    os.write(w, b"closed")
                os._exit(0)
            os.waitpid(pid, 0)
            os.close(w)
            assert os.read(r, 16) == b"closed"
            os.close(r)
            os.fstat(lock.fd)  # the parent's is untouched...
            other = os.open(lock.path, os.O_RDWR)
            try:  # ...and still holds the lock
                with pytest.raises(BlockingIOError):
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(other)
    finally:
        store.close()
