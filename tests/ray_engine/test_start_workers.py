"""engine_ray.start_workers: the worker processes it has the nodes start are the ones the actors
get (Ray hands a never-used idle worker to an actor; one that ran a task it would not)."""
from __future__ import annotations

import ast
import subprocess
import sys

from support import ROOT

DRIVER = r"""
import os, sys, time
from pathlib import Path
from organizer.engine_ray import connect, start_workers
sessions = {int(s) for s in sys.argv[2].split(",")}

def idle_workers():
    out = set()
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                stat = Path(f"/proc/{e}/stat").read_text()
                argv = Path(f"/proc/{e}/cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[3]) in sessions and argv.startswith(b"ray::IDLE"):
                out.add(int(e))
    return out

connect(sys.argv[1])
before = idle_workers()
print("asked", start_workers(2))
deadline = time.time() + 30
while len(idle_workers() - before) < 2 and time.time() < deadline:
    time.sleep(0.2)
started = idle_workers() - before
import ray

@ray.remote(num_cpus=1)
class Pid:
    def pid(self):
        return os.getpid()

actors = [Pid.options(scheduling_strategy="SPREAD").remote() for _ in range(2)]
print("started", sorted(started))
print("actors", sorted(ray.get([a.pid.remote() for a in actors])))
"""


def test_actors_get_the_started_workers(ray_cluster):
    sessions = ",".join(str(node.pid) for node in ray_cluster.nodes)  # each node is a session (cluster.py)
    proc = subprocess.run([sys.executable, "-c", DRIVER, ray_cluster.address, sessions], env=ray_cluster.env(),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines["asked"] == "2"  # one a CPU: the cluster's two nodes have one each
    started, actors = ast.literal_eval(lines["started"]), ast.literal_eval(lines["actors"])
    assert started, "no worker process was started ahead"
    assert set(started) <= set(actors), (started, actors)  # no started worker left idle: the actors took them


def test_spread_takes_a_cpu_from_each_node_in_turn():
    from organizer.engine_ray import _spread

    nodes = [{"NodeID": "a", "Alive": True, "Resources": {"CPU": 3.0}},
             {"NodeID": "b", "Alive": True, "Resources": {"CPU": 1.0}},
             {"NodeID": "c", "Alive": False, "Resources": {"CPU": 8.0}},
             {"NodeID": "d", "Alive": True, "Resources": {}}]
    assert _spread(nodes, 3) == ["a", "b", "a"]
    assert _spread(nodes, 10) == ["a", "b", "a", "a"]  # no more than the live nodes' CPUs
    assert _spread(nodes, 0) == []
