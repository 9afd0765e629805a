"""cluster.py's assignment of rows outside the fitted sample, as Ray tasks (engine_ray.assign_rest),
gives exactly what the local code computes (slow: UMAP's first fit compiles with numba). The Ray
driver runs in its own process, as the CLI's would, with the cluster's environment."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support import ROOT

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, "tests")
from support import stored_vectors
from organizer import engine_ray
from organizer.discover.cluster import HDBSCANClusterer, UMAPReducer, _vote, sample_indices

X = np.stack(list(stored_vectors(sys.argv[1]).values())).astype(np.float32)
idx = sample_indices(len(X), 80, 0)
rest = np.setdiff1d(np.arange(len(X)), idx)
reducer = UMAPReducer(max_fit=80, random_state=0).fit(X)
E_fit = reducer.fit_embedding_
h = HDBSCANClusterer(min_cluster_size=5, max_fit=None).fit(E_fit)
want = _vote(E_fit, h.labels_, h.probabilities_, reducer.transform(X[rest]), 15)
got = engine_ray.assign_rest(reducer, E_fit, h.labels_, h.probabilities_, X[rest], k=15, chunk_rows=16,
                             address=sys.argv[2])
print(json.dumps({"rows": len(rest), "groups": len(set(h.labels_.tolist())),
                  "labels_equal": bool(np.array_equal(got[0], want[0])),
                  "probs_close": bool(np.allclose(got[1], want[1])),
                  "reducer_whole": reducer.reducer_ is not None}))
"""


def test_assign_rest_on_ray_equals_local(ray_cluster, sample_store):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(sample_store), ray_cluster.address], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=ray_cluster.env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rows"] == 80 and out["groups"] >= 2  # a real split, assigned in 5 chunks
    assert out["labels_equal"] and out["probs_close"] and out["reducer_whole"], out
