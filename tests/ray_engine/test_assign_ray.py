"""Clustering's assignment of the rows outside its fitted sample (their UMAP placement and their
group-tree vote, organizer/cluster.py) as Ray tasks on a real two-node cluster gives the same
labels, tree nodes and probabilities, bit for bit, as the local path. Each driver runs in its own
process, as the CLI's would, with the cluster's environment."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from support import ROOT, run_cli

SCRIPT = r"""
import json, sys, tempfile
import numpy as np
from organizer.engine_ray import rows as ray_rows
from organizer.discover import cluster

rng = np.random.default_rng(0)   # 8 blobs with a spread: a real tree and a vote to cast
centres = rng.standard_normal((8, 64))
X = (centres[rng.integers(0, 8, 3000)] + 0.35 * rng.standard_normal((3000, 64))).astype(np.float32)
X = np.concatenate([X, X[:600] + 1e-3 * rng.standard_normal((600, 64)).astype(np.float32)])  # near copies
local = cluster.cluster_vectors(X, max_fit=600)

# the Ray driver's input as `cluster --engine ray` has it: a staged memory map, whose big row
# selections (copy joining clusters X[keep]) are staged too
staged = []
stage = ray_rows.stage_rows
ray_rows.stage_rows = lambda folder, fill, n, dim: staged.append(n) or stage(folder, fill, n, dim)
ray_rows.STAGE_BYTES = 200_000  # above the 600-row sample (154 kB), below X[keep]
Xs = ray_rows.stage_rows(tempfile.mkdtemp(), lambda out: out.__setitem__(slice(None), X), *X.shape)
parts = []
on = ray_rows.rows_on_ray(sys.argv[1], rows_per_task=1024)
engine = on.engine
def counting(fn, shared, X, rows):   # the parts really go through the Ray engine
    for out in engine(fn, shared, X, rows):
        parts.append(len(out[0]) if isinstance(out, tuple) else len(out))
        yield out
on.engine = counting
with on:
    remote = cluster.cluster_vectors(Xs, max_fit=600)
try:
    ray_rows.row_engine(sys.argv[1], rows_per_task=1000)
    refused = False
except ValueError:
    refused = True
same = lambda a, b: bool(np.array_equal(a, b))
print(json.dumps({"parts": parts, "staged": staged, "clusters": local.n_clusters,
                  "copies": local.params.get("copies_joined", 0), "inner_n": remote.params["n"],
                  "labels": same(local.labels, remote.labels), "core": same(local.core_labels, remote.core_labels),
                  "nodes": same(local.nodes, remote.nodes), "probs": same(local.probabilities, remote.probabilities),
                  "tree": local.tree == remote.tree, "refused": refused}))
"""


def test_assignment_on_ray_is_bit_equal_to_local(ray_cluster):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, ray_cluster.address], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=ray_cluster.env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["clusters"] >= 4 and out["copies"] > 0, out  # the copy-joining path ran
    # the kept rows were staged, not copied (at each pass of copy joining); the rows outside the
    # last pass's sample were placed in parts of 1024 on Ray, then voted in the same parts
    staged = out["staged"]
    assert staged[:2] == [3600, 3600 - out["copies"]] and staged == sorted(staged, reverse=True), out
    half = len(out["parts"]) // 2
    assert half >= 3 and out["parts"][:half] == out["parts"][half:], out
    assert sum(out["parts"][:half]) == staged[-1] - 600, out
    assert all(out[k] for k in ("labels", "core", "nodes", "probs", "tree", "refused")), out


MEMBERS = "SELECT image_id, cluster, core_cluster, probability, node FROM cluster_members WHERE clustering_id=? ORDER BY image_id"
NODES = "SELECT node, parent, level, agreement FROM cluster_nodes WHERE clustering_id=? ORDER BY node"


def saved(store):
    with sqlite3.connect(store / "organizer.db") as db:
        cid = db.execute("SELECT MAX(id) FROM clusterings").fetchone()[0]
        return db.execute(MEMBERS, (cid,)).fetchall(), db.execute(NODES, (cid,)).fetchall()


@pytest.mark.slow
def test_cluster_cli_on_ray_saves_what_local_saves(ray_cluster, store_copy):
    """`organizer cluster --engine ray` with a fit sample of 60 of sample_data's 160 images: the
    vectors staged as a memory map, 100 images assigned on Ray, the same rows saved."""
    run_cli("cluster", "--store", store_copy, "--max-fit", "60")
    local = saved(store_copy)
    out = run_cli("cluster", "--store", store_copy, "--max-fit", "60", "--engine", "ray",
                  "--ray-address", ray_cluster.address, env=ray_cluster.env())
    remote = saved(store_copy)
    assert len(remote[0]) == 160 and len({r[1] for r in remote[0]}) >= 3, out.stdout
    assert remote == local
    assert not list(store_copy.glob(".cluster-*")), "the staged vectors are removed"
    with sqlite3.connect(store_copy / "organizer.db") as db:
        params = [json.loads(r[0]) for r in db.execute("SELECT params FROM clusterings ORDER BY id DESC LIMIT 2")]
    assert params[0]["max_fit"] == params[1]["max_fit"] == 60


def test_cluster_bad_engine_or_address_changes_nothing(ray_cluster, store_copy):
    from support import free_port

    before = saved(store_copy)
    wrong = run_cli("cluster", "--store", store_copy, "--engine", "ray", "--ray-address", f"127.0.0.1:{free_port()}",
                    check=False, env=ray_cluster.env())
    assert wrong.returncode == 2 and "no Ray cluster answers at 127.0.0.1:" in wrong.stderr, wrong.stderr
    bogus = run_cli("cluster", "--store", store_copy, "--engine", "spark", check=False)
    assert bogus.returncode == 2 and "unknown engine 'spark': use local or ray" in bogus.stderr, bogus.stderr
    assert "Traceback" not in wrong.stderr + bogus.stderr
    assert saved(store_copy) == before
