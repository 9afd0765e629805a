"""A real two-node Ray cluster on this machine, every server on 127.0.0.1, for the tests.

Each node is `ray start --block` in its own process group, so the tests stop exactly the
processes they started (by group id), never other Ray instances on the machine."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from support import ROOT, free_port

# `ray start` turns a loopback --node-ip-address into the machine's outside address (so that a
# cluster can span machines); this wrapper keeps the nodes on 127.0.0.1.
RAY_START = ("import ray._private.services as s\n"
             "s.resolve_ip_for_localhost = lambda host: host\n"
             "s.get_node_ip_address = lambda address=None: '127.0.0.1'\n"
             "from ray.scripts.scripts import main\n"
             "main()\n")
OBJECT_STORE_BYTES = 200 << 20   # per node: results stream through, the machine has 2 cores
# No log monitor: it tails every worker's log to forward lines to drivers, and organizer's drivers
# take none (log_to_driver=False); docs/SCALING.md recommends the same to users.


def group_pids(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":  # a zombie is gone, only not yet reaped  # field 5 of /proc/PID/stat: the process group
                out.append(int(entry))
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class LocalCluster:
    def __init__(self, cpus_per_node: int = 1):
        self.cpus = cpus_per_node
        self.tmp = Path(tempfile.mkdtemp(prefix="orgray-", dir="/tmp"))  # short: Ray's socket paths
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.token = uuid.uuid4().hex
        self.nodes: list[subprocess.Popen] = []

    def env(self, **extra) -> dict:
        """Environment for `ray start` and for drivers (the CLI) joining this cluster."""
        return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                # a driver resolves 127.0.0.1 to the outside address unless Ray thinks this is a one-machine setup
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **extra}

    def _node(self, *args: str, name: str) -> subprocess.Popen:
        env = self.env()
        env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")  # a worker node refuses to start with it
        log = open(self.tmp / f"{name}.log", "w")
        proc = subprocess.Popen([sys.executable, "-c", RAY_START, "start", "--block", "--num-cpus", str(self.cpus),
                                 "--node-ip-address", "127.0.0.1", "--object-store-memory", str(OBJECT_STORE_BYTES),
                                 "--disable-usage-stats", "--include-log-monitor", "false", *args],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 120
        while "Ray runtime started" not in (self.tmp / f"{name}.log").read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start failed:\n{(self.tmp / f'{name}.log').read_text()[-3000:]}")
            time.sleep(0.5)
        self.nodes.append(proc)
        return proc

    def start(self, workers: int = 1) -> "LocalCluster":
        """A head and `workers` more nodes."""
        self._node("--head", "--port", str(self.port), "--include-dashboard", "false",
                   "--temp-dir", str(self.tmp / "ray"), name="head")
        for _ in range(workers):
            self.add_worker()
        return self

    def add_worker(self) -> subprocess.Popen:
        return self._node("--address", self.address, name=f"worker{len(self.nodes)}")

    @property
    def worker(self) -> subprocess.Popen | None:
        alive = [p for p in self.nodes[1:] if p.poll() is None and self._raylet(p)]
        return alive[-1] if alive else None

    def _raylet(self, node: subprocess.Popen) -> int | None:
        return next((pid for pid in group_pids(node.pid) if comm(pid) == "raylet"), None)

    def kill_worker_node(self) -> None:
        """SIGKILL the worker node's raylet and every process of that node (its actors too)."""
        node = self.worker
        for pid in group_pids(node.pid):
            if pid != node.pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    @contextlib.contextmanager
    def restored(self, proc: subprocess.Popen):
        """Around a fault test: the CLI run ``proc`` never outlives it, and the worker node it may
        have killed is back afterwards, for the tests that share this cluster."""
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.ensure_worker()

    def ensure_worker(self) -> None:
        """A worker node again after a kill, and the killed one marked dead: the GCS counts a
        killed node (and its CPU) as alive until it misses enough heartbeats, and a test after
        this one counts nodes and actors."""
        if self.worker is None:
            self._stop(self.nodes.pop())
            self.add_worker()
            self.wait_for_nodes(len(self.nodes))

    def wait_for_nodes(self, n: int, timeout: float = 120) -> None:
        probe = ("import ray\n"
                 f"ray.init(address='{self.address}', logging_level='ERROR', log_to_driver=False)\n"
                 "print('ALIVE', sum(1 for x in ray.nodes() if x['Alive']), int(ray.cluster_resources().get('CPU', 0)))\n")
        deadline = time.time() + timeout
        while True:
            out = subprocess.run([sys.executable, "-c", probe], env=self.env(), capture_output=True, text=True,
                                 timeout=60).stdout
            line = next((ln.split() for ln in out.splitlines() if ln.startswith("ALIVE")), None)
            if line and int(line[1]) == n and int(line[2]) == n * self.cpus:
                return
            if time.time() > deadline:
                raise RuntimeError(f"the cluster still shows {line} nodes/CPUs, not {n}")
            time.sleep(2)

    @staticmethod
    def _stop(*nodes: subprocess.Popen, grace: float = 8.0) -> None:
        """SIGTERM (`ray start --block` stops its node), then SIGKILL what is left of each group."""
        for node in nodes:
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
        deadline = time.time() + grace
        while time.time() < deadline and any(group_pids(n.pid) for n in nodes):
            time.sleep(0.2)
        for _ in range(50):
            left = [pid for n in nodes for pid in group_pids(n.pid)]
            if not left:
                for n in nodes:
                    n.wait(5)
                return
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"processes of a Ray node are left: {left}")

    def stop(self) -> None:
        self._stop(*self.nodes)
        self.nodes = []
        shutil.rmtree(self.tmp, ignore_errors=True)
