"""A fault in clustering's assignment on Ray (slow): the worker node killed while it runs
assignment tasks. Ray retries a task whose worker died and rebuilds a result lost with its node
(every task is pure and `max_retries` > 0), so the run must save what the local engine saves, bit
for bit, one row per image."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import ROOT, run_cli

from .synthetic import synthetic_store
from .test_assign_ray import saved

pytestmark = pytest.mark.slow
N_ROWS = 24576       # 22,528 rows outside the fitted sample: 22 parts a step, two steps
MAX_FIT = 2048
PART_ROWS = "1024"   # the smallest part the assignment allows (cluster._BLOCK)
NOT_TASKS = {"ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent"}  # a node's idle workers and agents


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A synthetic store clustered by the local engine, and what that saved."""
    store = synthetic_store(tmp_path_factory.mktemp("assign-faults") / "store", N_ROWS, centres=12)
    run_cli("cluster", "--store", store, "--max-fit", MAX_FIT)
    return store, saved(store)


def tasks_on(session: int) -> list[str]:
    """The Ray tasks running now in a node's processes (a busy Ray worker is titled `ray::NAME`)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            title = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[3]) == session and title.startswith("ray::") \
                and title not in NOT_TASKS:
            out.append(title)
    return out


def test_worker_node_killed_mid_assignment(ray_cluster, reference):
    store, local = reference
    env = ray_cluster.env(ORGANIZER_RAY_ROWS_PER_TASK=PART_ROWS)
    proc = subprocess.Popen([sys.executable, "-m", "organizer", "cluster", "--store", str(store), "--max-fit",
                             str(MAX_FIT), "--engine", "ray", "--ray-address", ray_cluster.address],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    with ray_cluster.restored(proc):
        worker = ray_cluster.worker
        deadline = time.time() + 300
        while not seen and proc.poll() is None and time.time() < deadline:
            seen = tasks_on(worker.pid)  # the node is a session of its own (cluster.py)
            time.sleep(0.02)
        if seen:
            ray_cluster.kill_worker_node()  # its raylet, its object store and the tasks running there
        still_running = proc.poll() is None
        out, err = proc.communicate(timeout=600)
    assert seen, "no assignment task ran on the worker node"
    assert still_running, "the run ended before the kill"
    assert proc.returncode == 0, err[-3000:]
    remote = saved(store)
    ids = [r[0] for r in remote[0]]
    assert len(ids) == len(set(ids)) == N_ROWS  # every image once
    assert len({r[1] for r in remote[0]}) >= 3, out
    assert remote == local  # labels, core labels, probabilities, tree nodes: bit for bit
    with sqlite3.connect(store / "organizer.db") as db:
        assert db.execute("SELECT COUNT(*) FROM clusterings").fetchone()[0] == 2
