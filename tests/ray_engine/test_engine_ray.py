"""`--engine ray` on a real two-node Ray cluster against the local engine on the same photos:
same ids, errors, renames and summary; vectors equal within cosine 0.999; clusters and
predictions unaffected."""
from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from support import SAMPLE, run_cli, stored_vectors

from reliability.helpers import check_consistent, new_store, summary


def ray_index(cluster, folder, store, *extra, check=True):
    return run_cli("index", folder, "--store", store, "--backbone", "efficientnet-lite0", "--engine", "ray",
                   "--ray-address", cluster.address, "--show-errors", "100", *extra, check=check, env=cluster.env())


def members(store) -> dict[str, int]:
    with sqlite3.connect(store / "organizer.db") as db:
        cid = db.execute("SELECT MAX(id) FROM clusterings").fetchone()[0]
        return dict(db.execute("SELECT image_id, cluster FROM cluster_members WHERE clustering_id=?", (cid,)))


def same_partition(a: dict, b: dict) -> float:
    from sklearn.metrics import adjusted_rand_score

    ids = sorted(a)
    assert sorted(b) == ids
    return adjusted_rand_score([a[i] for i in ids], [b[i] for i in ids])


def test_sample_data_on_two_nodes_matches_local(ray_cluster, sample_store, tmp_path):
    store = new_store(sample_store, tmp_path / "store")
    proc = ray_index(ray_cluster, SAMPLE, store)
    assert "2 nodes, 2 actors" in proc.stdout, proc.stdout
    assert summary(proc.stdout) == {"files": 160, "embedded": 160, "reused": 0, "unchanged": 0, "failed": 0,
                                    "missing": 0}
    # the command leaves without the interpreter's teardown (cli/fastexit.py) only after closing
    # the store: its last connection gone, SQLite has checkpointed and removed the WAL file
    assert not (store / "organizer.db-wal").exists()
    local, remote = check_consistent(sample_store), check_consistent(store)
    assert remote == local  # path -> image id, errors, embedded images
    a, b = stored_vectors(sample_store), stored_vectors(store)
    cos = min(float(a[i] @ b[i] / np.linalg.norm(a[i]) / np.linalg.norm(b[i])) for i in a)
    assert cos >= 0.999, cos

    # Clustering is deterministic in its input: equal stored vectors (what this machine gives,
    # both engines running the same verified ONNX file on one thread) cannot change a cluster.
    # Only when they differ is the clustering itself (35 s) run and compared.
    if not all(np.array_equal(a[i], b[i]) for i in a):
        run_cli("cluster", "--store", store)
        assert same_partition(members(sample_store), members(store)) >= 0.99


@pytest.fixture(scope="module")
def hostile(sample_store, tmp_path_factory):
    """tests/reliability's folder of corrupt files, bombs and odd modes, indexed by both engines."""
    from reliability.test_corrupt_and_bombs import build

    base = tmp_path_factory.mktemp("ray-hostile")
    build(base / "photos")
    local = new_store(sample_store, base / "local")
    out = run_cli("index", base / "photos", "--store", local, "--backbone", "efficientnet-lite0",
                  "--show-errors", "100")
    return base / "photos", local, out


def test_bad_files_recorded_as_on_the_local_path(ray_cluster, hostile, sample_store, tmp_path):
    folder, local, local_out = hostile
    store = new_store(sample_store, tmp_path / "store")
    proc = ray_index(ray_cluster, folder, store)
    assert summary(proc.stdout) == summary(local_out.stdout)
    assert summary(proc.stdout)["failed"] >= 12
    expected, got = check_consistent(local), check_consistent(store)
    assert got["errors"] == expected["errors"] and got == expected
    skipped = sorted(line for line in proc.stderr.splitlines() if line.startswith("  skipped "))
    assert skipped == sorted(line for line in local_out.stderr.splitlines() if line.startswith("  skipped "))

    # incremental: a rename and a copy are recognised by content, on both engines alike
    moved = tmp_path / "photos"
    shutil.copytree(folder, moved)
    local2 = tmp_path / "local2"
    shutil.copytree(local, local2)
    with sqlite3.connect(local2 / "organizer.db") as db:
        db.execute("UPDATE meta SET value=? WHERE key='library_root'", (str(moved.resolve()),))
    with sqlite3.connect(store / "organizer.db") as db:
        db.execute("UPDATE meta SET value=? WHERE key='library_root'", (str(moved.resolve()),))
    good = sorted(p for p in moved.rglob("*.jpg") if p.parent.name not in ("trunc", "junk", "disguised", "modes"))
    good[0].rename(good[0].with_name("renamed.jpg"))
    shutil.copy2(good[1], good[1].with_name("copy.jpg"))
    a = run_cli("index", moved, "--store", local2, "--backbone", "efficientnet-lite0")
    b = ray_index(ray_cluster, moved, store)
    assert summary(b.stdout) == summary(a.stdout)
    assert summary(b.stdout)["reused"] == 2 and summary(b.stdout)["missing"] == 1
    assert check_consistent(store) == check_consistent(local2)


def test_predict_on_ray_equals_local(ray_cluster, store_copy):
    from organizer.library import Library

    lib = Library(store_copy, create=False)
    try:  # three named classes, trained here: what is compared is predict
        for cls in ("airplanes", "sunflower", "watch"):
            lib.label([f"{cls}/{p.name}" for p in sorted((SAMPLE / cls).glob("*.jpg"))[:8]], cls)
        lib.train()
        lib.predict()
    finally:
        lib.close()
    query = "SELECT image_id, model_id, label, best, confidence, margin FROM predictions ORDER BY image_id"
    with sqlite3.connect(store_copy / "organizer.db") as db:
        local = db.execute(query).fetchall()
        db.execute("DELETE FROM predictions")
    out = run_cli("predict", "--store", store_copy, "--engine", "ray", "--ray-address", ray_cluster.address,
                  env=ray_cluster.env())
    assert out.stdout.startswith(f"predicted {len(local)} images")
    with sqlite3.connect(store_copy / "organizer.db") as db:
        remote = db.execute(query).fetchall()
    assert len(remote) == len(local) == 160
    assert [r[:4] for r in remote] == [r[:4] for r in local]
    assert np.allclose([r[4:] for r in remote], [r[4:] for r in local], atol=1e-5)


def test_unreachable_address_is_a_clear_error(ray_cluster, tmp_path, sample_store):
    from support import SAMPLE as folder

    from .cluster import free_port

    store = new_store(sample_store, tmp_path / "store")
    proc = run_cli("index", folder, "--store", store, "--engine", "ray", "--ray-address", f"127.0.0.1:{free_port()}",
                   check=False, env=ray_cluster.env())
    assert proc.returncode == 2 and "no Ray cluster answers at 127.0.0.1:" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
