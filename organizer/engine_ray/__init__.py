"""The Ray engine: decode and embed on a Ray cluster, write the store here.

`organizer index FOLDER --engine ray` plans exactly as the local engine does (scan, unchanged
files, renames; indexer.py) and then hands the files to read to Ray Data: `map_batches` over
an actor pool, each actor holding the network once, reading files by path (every node must see
the folder at the same path: a shared filesystem). Actors return per file what the local decode
workers return plus its vector; this process alone writes shards and SQLite through the same
sink as the local engine, so ids, errors, renames, commits and the summary are the same.

Memory here stays bounded: files go out in waves of WAVE_FILES, results stream back block by
block and are committed every FLUSH_EVERY images. Ray retries the work of an actor or node that
dies (Ray Data restarts its actors), and the sink drops a file it already received, so a file
is never written twice.

    __init__.py  joining (or starting) a cluster, its size
    index.py     the decode + embed actors of `organizer index --engine ray` (ray_producer)
    predict.py   the classifier as Ray tasks over vector shards (predict_store_ray)
    rows.py      clustering's assignment of the rows outside its fitted sample as Ray tasks,
                 bit-equal to the local path (discover/cluster.py, ROW_ENGINE; cluster_inputs)

Tested with Ray 2.60 (`map_batches(compute=ActorPoolStrategy(...))`; `concurrency=` is
deprecated there)."""
from __future__ import annotations

import os
import socket
import sys


from organizer.store import StoreError

BLOCK_FILES = 32             # files per Ray Data block: one actor call
WAVE_FILES = 65536           # files per Dataset: bounds the paths and object refs held at once
OBJECT_STORE_ENV = "ORGANIZER_RAY_OBJECT_STORE_MB"
OBJECT_STORE_MB = 512        # a local cluster's object store: results stream, so little is needed
CONNECT_TIMEOUT_S = 3.0
CANCEL_AFTER_S = 0.2         # start_workers' tasks: see there


class RayEngineError(StoreError):
    pass


def _ray():
    try:
        import ray
    except ImportError:
        raise RayEngineError("the Ray engine needs Ray: pip install 'organizer[ray]' (or use --engine local)") from None
    return ray


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return True  # not host:port (ray://, "auto"): let Ray decide
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def connect(address: str | None = None, *, quiet: bool = False) -> str:
    """Join the cluster at `address` (or $RAY_ADDRESS, or one started on this machine with
    `ray start`); with none, start a local one, saying so. Returns how it connected.
    An address given but not reachable is an error: a typo must not run on one machine."""
    ray = _ray()
    if ray.is_initialized():
        return "connected"
    _disconnect_at_exit()  # Ray Data is imported (and quieted) only where it runs: index.py
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        if not _reachable(address):
            raise RayEngineError(f"no Ray cluster answers at {address}: start one with `ray start --head` "
                                 "there, or leave out --ray-address to run a local one")
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        return f"cluster at {address}"
    found = _started_here()
    if found:
        ray.init(address=found, logging_level="WARNING", log_to_driver=False)
        return f"cluster at {found}"
    mb = int(os.environ.get(OBJECT_STORE_ENV, "") or OBJECT_STORE_MB)
    print(f"organizer: no Ray cluster found (no --ray-address, no RAY_ADDRESS): starting a local one "
          f"({os.cpu_count()} CPUs, {mb} MB object store); see docs/SCALING.md to use several machines",
          file=sys.stderr)
    ray.init(num_cpus=os.cpu_count(), object_store_memory=mb << 20, include_dashboard=False,
             logging_level="WARNING", log_to_driver=False)
    return "local cluster"


def _disconnect_at_exit() -> None:
    """Leave the cluster from an exit handler of our own: run after Ray's (handlers run last
    registered first), so Ray's finds nothing to do. Ray's own waits 0.5 s at interpreter exit for
    workers' log lines to reach the driver; with log_to_driver=False none do (0.5 s a command)."""
    import atexit

    ray = _ray()
    atexit.register(lambda: ray.is_initialized() and ray.shutdown())


def _started_here() -> str | None:
    """The address the last `ray start --head` on this machine recorded, if it still answers
    (a stale record must not make every run wait for Ray's connection timeout)."""
    try:
        from ray._private.services import find_bootstrap_address

        found = find_bootstrap_address(None)
    except Exception:  # an internal helper: if it moves, we only lose the discovery
        return None
    return found if found and _reachable(found) else None


def quiet_ray_data() -> None:
    """Our own progress bar and summary say what happened; Ray Data's bars and per-dataset
    lines would interleave with them on stderr."""
    import logging

    from ray.data import DataContext

    for name in ("ray.data", "ray.data._internal.progress", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.execution_options.verbose_progress = False


def _never_runs() -> None:  # start_workers' task: cancelled before a worker takes it
    return None


def start_workers(n: int) -> int:
    """Have the nodes start `n` worker processes now (spread over the nodes' CPUs, as the actor
    pool is), so that the actors created later, once the scan and plan are done, find them
    started. Ray starts a process for a task's lease; these tasks are cancelled after
    CANCEL_AFTER_S (time for a lease to reach another node's raylet, too short for a Python
    process to start and register), so the processes join their node's idle pool without having
    run anything. Ray gives a worker that ran a task only to tasks, a never-used one to an actor
    too, which then skips a process start and `import ray`. Returns how many were asked for; a
    cluster that refuses (an older Ray, a node gone) only loses the head start."""
    import threading

    ray = _ray()
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(num_cpus=1, max_retries=0)(_never_runs)
        refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
                for node_id in _spread(ray.nodes(), n)]
    except Exception:  # a head start only: never a reason for the index to fail
        return 0

    def cancel():
        for ref in refs:
            try:
                ray.cancel(ref)
            except Exception:  # already finished or the cluster is gone: nothing to undo
                pass

    timer = threading.Timer(CANCEL_AFTER_S, cancel)
    timer.daemon = True
    timer.start()
    return len(refs)


def _spread(nodes: list[dict], n: int) -> list[str]:
    """n node ids, one CPU slot at a time from each node in turn (as SPREAD places actors)."""
    free = {node["NodeID"]: int(node.get("Resources", {}).get("CPU", 0)) for node in nodes if node.get("Alive")}
    out: list[str] = []
    while len(out) < n and any(free.values()):
        for node_id in free:
            if free[node_id] and len(out) < n:
                out.append(node_id)
                free[node_id] -= 1
    return out


def alive_nodes() -> int:
    return sum(1 for n in _ray().nodes() if n.get("Alive"))


def cluster_cpus() -> int:
    ray = _ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def map_row_chunks(fn, shared, chunks, *, address: str | None = None, workers: int | None = None):
    """Yield fn(shared, chunk) for each chunk (arrays of rows), in order, computed as Ray tasks;
    `shared` (a fitted model, a sample's embedding) goes to the object store once, and at most
    2 x workers chunks are in flight (the next chunk is read only when a slot is free)."""
    ray = _ray()
    connect(address)
    window = 2 * (workers or cluster_cpus())
    task = ray.remote(num_cpus=1, max_retries=3)(fn)
    shared_ref = ray.put(shared)
    pending = []
    for chunk in chunks:
        pending.append(task.remote(shared_ref, chunk))
        if len(pending) >= window:
            yield ray.get(pending.pop(0))
    for ref in pending:
        yield ray.get(ref)
