"""Faults on the Ray engine (slow): a worker node killed mid-run, the driver killed mid-run.
The store must end as an uninterrupted run leaves it: every file once, with its content's id."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support import ROOT, SHARED, run_cli, stored_vectors

from organizer.store import content_hash
from reliability.helpers import check_consistent, new_store, summary

pytestmark = pytest.mark.slow
DATASET = SHARED / "datasets" / "caltech101-8"
N_FILES = 480


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_store):
    """N_FILES photos of caltech101-8 (enough for a run of a few tens of seconds) and the store the
    local engine makes of them: what every interrupted run must end up equal to."""
    if not DATASET.exists():
        pytest.skip(f"{DATASET} is not here")
    base = tmp_path_factory.mktemp("ray-faults")
    files = sorted(p for p in DATASET.rglob("*.jpg"))[:: max(1, len(list(DATASET.rglob("*.jpg"))) // N_FILES)][:N_FILES]
    for src in files:
        dest = base / "photos" / src.relative_to(DATASET)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    reference = new_store(sample_store, base / "reference")
    run_cli("index", base / "photos", "--store", reference, "--backbone", "efficientnet-lite0")
    return base / "photos", reference


def start_index(cluster, folder, store) -> subprocess.Popen:
    env = cluster.env(ORGANIZER_FLUSH_EVERY="32")  # many commits: a kill always lands between two
    return subprocess.Popen([sys.executable, "-m", "organizer.cli", "index", str(folder), "--store", str(store),
                             "--backbone", "efficientnet-lite0", "--engine", "ray", "--ray-address", cluster.address],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def committed(store) -> int:
    try:
        with sqlite3.connect(f"file:{store / 'organizer.db'}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_for_commits(proc, store, at_least: int, timeout: float = 240) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = committed(store)
        if n >= at_least:
            return n
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the run made no progress")


def assert_complete(store, folder, reference):
    got = check_consistent(store)
    assert got == check_consistent(reference)  # same paths, ids, errors, embedded images: none lost or twice
    for rel, image_id in got["files"].items():
        assert image_id == content_hash((folder / rel).read_bytes())
    a, b = stored_vectors(reference), stored_vectors(store)
    assert min(float(a[i] @ b[i] / np.linalg.norm(a[i]) / np.linalg.norm(b[i])) for i in a) >= 0.999


def test_worker_node_killed_mid_run(ray_cluster, photos, sample_store, tmp_path):
    folder, reference = photos
    store = new_store(sample_store, tmp_path / "store")
    with ray_cluster.restored(start_index(ray_cluster, folder, store)) as proc:
        before = wait_for_commits(proc, store, 64)
        ray_cluster.kill_worker_node()  # its raylet and the actor running there
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert before < N_FILES  # the kill came mid-run
    assert summary(out)["embedded"] == N_FILES and summary(out)["failed"] == 0
    assert_complete(store, folder, reference)


def test_driver_killed_mid_run_then_resumed(ray_cluster, photos, sample_store, tmp_path):
    folder, reference = photos
    store = new_store(sample_store, tmp_path / "store")
    proc = start_index(ray_cluster, folder, store)
    try:
        wait_for_commits(proc, store, 64)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = committed(store)
    assert 0 < partial < N_FILES
    check_consistent(store)  # intact after the kill
    again = run_cli("index", folder, "--store", store, "--backbone", "efficientnet-lite0", "--engine", "ray",
                    "--ray-address", ray_cluster.address, env=ray_cluster.env())
    counts = summary(again.stdout)
    assert counts["unchanged"] == partial and counts["embedded"] + counts["unchanged"] == N_FILES
    assert_complete(store, folder, reference)


def test_no_cluster_starts_a_local_one(ray_cluster, sample_store, tmp_path):
    """No address and no `ray start` on record: a local cluster, said on stderr."""
    import tempfile

    ray_tmp = Path(tempfile.mkdtemp(prefix="orgray-local-", dir="/tmp"))  # short: Ray's socket paths
    env = {k: v for k, v in ray_cluster.env().items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    env.update(RAY_TMPDIR=str(ray_tmp), ORGANIZER_RAY_OBJECT_STORE_MB="128", HOME=str(tmp_path))  # token under HOME
    store = new_store(sample_store, tmp_path / "store")
    folder = tmp_path / "few"
    for cls in ("airplanes", "watch"):
        shutil.copytree(ROOT / "sample_data" / cls, folder / cls)
    proc = run_cli("index", folder, "--store", store, "--backbone", "efficientnet-lite0", "--engine", "ray", env=env)
    assert "no Ray cluster found" in proc.stderr and "starting a local one" in proc.stderr
    assert "local cluster" in proc.stdout and summary(proc.stdout)["failed"] == 0
    assert summary(proc.stdout)["embedded"] == sum(1 for _ in folder.rglob("*.jpg"))
    deadline = time.time() + 30  # the cluster it started ends with it
    while time.time() < deadline and processes_mentioning(str(ray_tmp)):
        time.sleep(0.5)
    assert not processes_mentioning(str(ray_tmp))
    shutil.rmtree(ray_tmp, ignore_errors=True)


def processes_mentioning(text: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    out.append(int(entry))
            except OSError:
                pass
    return out
