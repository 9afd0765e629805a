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

`predict_store_ray` runs the classifier as Ray tasks over vector shards; `cluster_inputs` /
`rows_on_ray` run clustering's assignment of the rows outside its fitted sample as Ray tasks over
parts of rows, bit-equal to the local path (organizer/cluster.py, ROW_ENGINE).

Tested with Ray 2.60 (`map_batches(compute=ActorPoolStrategy(...))`; `concurrency=` is
deprecated there)."""
from __future__ import annotations

import hashlib
import os
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np

from organizer.store import Store, StoreError

BLOCK_FILES = 32             # files per Ray Data block: one actor call
WAVE_FILES = 65536           # files per Dataset: bounds the paths and object refs held at once
OBJECT_STORE_ENV = "ORGANIZER_RAY_OBJECT_STORE_MB"
OBJECT_STORE_MB = 512        # a local cluster's object store: results stream, so little is needed
CONNECT_TIMEOUT_S = 3.0


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
    _quiet_ray_data()
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


def _started_here() -> str | None:
    """The address the last `ray start --head` on this machine recorded, if it still answers
    (a stale record must not make every run wait for Ray's connection timeout)."""
    try:
        from ray._private.services import find_bootstrap_address

        found = find_bootstrap_address(None)
    except Exception:  # an internal helper: if it moves, we only lose the discovery
        return None
    return found if found and _reachable(found) else None


def _quiet_ray_data() -> None:
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


def alive_nodes() -> int:
    return sum(1 for n in _ray().nodes() if n.get("Alive"))


def cluster_cpus() -> int:
    ray = _ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# -- the model, shipped once -------------------------------------------------------------
def model_spec(embedder) -> dict:
    """What actors need to embed exactly as this process would: the verified ONNX file itself
    when the embedder runs ONNX (built and checked here once, so no node exports or needs the
    weights), else the backbone spec and runtime for each actor to build in PyTorch."""
    ray = _ray()
    spec = {"backbone": embedder.name, "preprocess": embedder.preprocess, "dim": embedder.dim,
            "onnx": None, "label": "torch", "micro_batch": None}
    runner = embedder.runner(None) if hasattr(embedder, "runner") else None
    if runner is not None and hasattr(runner, "session"):
        data = Path(runner.path).read_bytes()
        spec.update(onnx=ray.put(data), sha256=hashlib.sha256(data).hexdigest(), label=runner.label,
                    micro_batch=runner.micro_batch)
    elif runner is not None:
        spec["label"] = runner.label
    return spec


def _local_model_file(spec: dict) -> Path:
    """The shipped ONNX bytes as a file on this node (a cache keyed by checksum)."""
    ray = _ray()
    folder = Path(tempfile.gettempdir()) / "organizer-ray-models"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec['sha256']}.onnx"
    if not path.exists():
        data = ray.get(spec["onnx"])
        if hashlib.sha256(data).hexdigest() != spec["sha256"]:
            raise RayEngineError("the model file arrived damaged")
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


class KnownHashes:
    """Content hashes already embedded, as one sorted fixed-width array: 32 bytes a hash, shared
    read-only by the actors of a node through the object store (a Python set is 4x larger and
    copied into every actor)."""

    def __init__(self, hashes):
        self.array = np.array(sorted(hashes), dtype="S32") if hashes else np.zeros(0, "S32")

    def __contains__(self, h: str) -> bool:
        a = self.array
        if not len(a):
            return False
        key = np.bytes_(h.encode())
        i = int(np.searchsorted(a, key))
        return i < len(a) and a[i] == key


class EmbedActor:
    """One Ray Data actor: reads, decodes and embeds blocks of files; built once per actor."""

    def __init__(self, spec: dict, root: str, thumb_size: int, max_pixels: int | None, known_ref, threads: int = 1):
        ray = _ray()
        from organizer.embed import l2_normalize

        self.root, self.thumb_size, self.max_pixels = root, thumb_size, max_pixels
        self.preprocess, self.dim = spec["preprocess"], spec["dim"]
        self.known = KnownHashes(())
        self.known.array = ray.get(known_ref[0])
        self.normalize = l2_normalize
        if spec["onnx"] is not None:
            from organizer.embed.runtime import OnnxRunner

            run = OnnxRunner(_local_model_file(spec), threads, spec["label"], spec["micro_batch"])
            self.embed = lambda x: l2_normalize(run(x))
        else:
            from organizer.embed import get_embedder

            embedder = get_embedder(spec["backbone"], store_backbone=spec["backbone"], quiet=True,
                                    runtime=spec["label"])
            if hasattr(embedder, "use_threads"):
                embedder.use_threads(threads)
            self.embed = embedder.embed_arrays

    def __call__(self, batch: dict) -> dict:
        from organizer.ingest.read import read_files

        items = read_files(self.root, [str(p) for p in batch["path"]], self.preprocess, self.thumb_size,
                           self.max_pixels, known=self.known)
        n = len(items)
        vectors = np.zeros((n, self.dim), np.float32)
        norms = np.zeros(n, np.float32)
        rows = [i for i, it in enumerate(items) if "pixels" in it]
        if rows:
            crops = np.stack([items[i].pop("pixels") for i in rows])
            v, nr = self.embed(self.preprocess.normalize(crops))
            vectors[rows], norms[rows] = v, nr
        embedded = np.zeros(n, bool)
        embedded[rows] = True
        return {"path": np.array([it["path"] for it in items], object),
                "hash": np.array([it.get("hash", "") for it in items], object),
                "error": np.array([it.get("error", "") for it in items], object),
                "width": np.array([it.get("width", 0) for it in items], np.int64),
                "height": np.array([it.get("height", 0) for it in items], np.int64),
                "format": np.array([it.get("format", "") for it in items], object),
                "thumb": np.array([it.get("thumb", b"") for it in items], object),
                "embedded": embedded, "vector": vectors, "norm": norms}


def _items(batch: dict) -> list[dict]:
    """A result block back into the items the sink takes (see ingest/read.py)."""
    out = []
    for i in range(len(batch["path"])):
        it: dict = {"path": str(batch["path"][i])}
        if batch["hash"][i]:
            it["hash"] = str(batch["hash"][i])
        if batch["error"][i]:
            it["error"] = str(batch["error"][i])
        elif batch["embedded"][i]:
            it.update(width=int(batch["width"][i]), height=int(batch["height"][i]), format=str(batch["format"][i]),
                      thumb=bytes(batch["thumb"][i]), vector=np.array(batch["vector"][i], np.float32),
                      norm=float(batch["norm"][i]))
        out.append(it)
    return out


def ray_producer(address: str | None = None):
    """The indexer's read step on Ray (see indexer._run_pipeline for the contract). Joins the
    cluster at once, so a wrong address fails before anything is scanned."""
    how = connect(address)

    def produce(root, to_read, embedder, known, *, workers, max_pixels, thumb_size, report=None):
        ray = _ray()
        import ray.data

        n_actors = workers or cluster_cpus()
        spec = model_spec(embedder)
        if report is not None:
            report.runtime = f"ray ({how}, {alive_nodes()} nodes, {n_actors} actors, {spec['label']})"
        known_ref = [ray.put(KnownHashes(known).array)]  # in a list: the actor gets the ref, not a copy per call
        delivered: set[str] = set()
        for start in range(0, len(to_read), WAVE_FILES):
            wave = to_read[start:start + WAVE_FILES]
            ds = ray.data.from_items([{"path": p} for p in wave],
                                     override_num_blocks=max(1, -(-len(wave) // BLOCK_FILES)))
            ds = ds.map_batches(EmbedActor, batch_size=None, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n_actors,
                                                                   initial_size=n_actors),
                                num_cpus=1, fn_constructor_args=(spec, str(root), thumb_size, max_pixels, known_ref),
                                udf_modifying_row_count=False)
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
                items = [it for it in _items(batch) if it["path"] not in delivered]  # a retried block twice
                delivered.update(it["path"] for it in items)
                yield items
            del ds

    return produce


# -- per-row work over vector shards -----------------------------------------------------
def _present_by_shard(store: Store):
    """Yield (shard, image ids in shard-row order) for every present image, read from a second,
    read-only connection so the caller may write while this streams."""
    import sqlite3

    db = sqlite3.connect(f"file:{store.root / 'organizer.db'}?mode=ro", uri=True)
    try:
        cur = db.execute("SELECT i.id, i.shard FROM images i WHERE i.shard IS NOT NULL AND EXISTS "
                         "(SELECT 1 FROM files f WHERE f.image_id = i.id AND f.status='ok') "
                         "ORDER BY i.shard, i.shard_row")
        current, ids = None, []
        for image_id, shard in cur:
            if shard != current and ids:
                yield current, ids
                ids = []
            current = shard
            ids.append(image_id)
        if ids:
            yield current, ids
    finally:
        db.close()


def _predict_task(model, ids, vectors):
    return [(i, *p) for i, p in zip(ids, model.predict(np.asarray(vectors, np.float32)))]


def predict_store_ray(store: Store, *, address: str | None = None, workers: int | None = None) -> int:
    """`model.predict_store` as Ray tasks, one per vector shard: the same rows, replaced in
    one transaction; at most 2 x workers shards are in flight."""
    import time

    from organizer.learn.model import load_model
    from organizer.store.vectors import load_vectors

    ray = _ray()
    model = load_model(store)
    model_id = store.current_model()["id"]
    connect(address)
    window = 2 * (workers or cluster_cpus())
    task = ray.remote(num_cpus=1, max_retries=3)(_predict_task)
    model_ref = ray.put(model)
    n = 0
    now = time.time()

    def write(ref):
        rows = ray.get(ref)
        store.db.executemany("INSERT INTO predictions(image_id, model_id, label, best, confidence, margin, "
                             "created_at) VALUES(?,?,?,?,?,?,?)",
                             [(i, model_id, label, best, conf, margin, now) for i, label, best, conf, margin in rows])
        return len(rows)

    with store.transaction():
        store.db.execute("DELETE FROM predictions")
        pending = []
        for _, ids in _present_by_shard(store):
            _, X = load_vectors(store, ids)
            pending.append(task.remote(model_ref, ids, X.astype(np.float16)))
            if len(pending) >= window:
                n += write(pending.pop(0))
        for ref in pending:
            n += write(ref)
    return n


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


# -- cluster: the rows outside the fitted sample ------------------------------------------
ROWS_PER_TASK = 4096   # 20 MB of 1280-d float32 a task; a multiple of cluster._BLOCK (results are then bit-equal)


def row_engine(address: str | None = None, workers: int | None = None, rows_per_task: int = ROWS_PER_TASK):
    """A `cluster.ROW_ENGINE` on Ray: the per-row steps of the rows outside the fitted sample
    (their UMAP placement, their group-tree vote) as one task per `rows_per_task` rows. The
    driver reads a part's rows (X may be a memory map) only when its task is sent."""
    from organizer.discover.cluster import _BLOCK

    if rows_per_task <= 0 or rows_per_task % _BLOCK:
        raise ValueError(f"rows_per_task must be a multiple of {_BLOCK}: a row's bits depend on its block")
    connect(address)

    def run(fn, shared, X, rows):
        parts = (np.ascontiguousarray(X[rows[i:i + rows_per_task]], np.float32)
                 for i in range(0, len(rows), rows_per_task))
        return map_row_chunks(fn, shared, parts, address=address, workers=workers)

    return run


class _RowsOnRay:
    def __init__(self, engine):
        self.engine, self.token = engine, None

    def __enter__(self):
        from organizer.discover.cluster import ROW_ENGINE

        self.token = ROW_ENGINE.set(self.engine)
        return self

    def __exit__(self, *exc):
        from organizer.discover.cluster import ROW_ENGINE

        ROW_ENGINE.reset(self.token)


def rows_on_ray(address: str | None = None, workers: int | None = None, **kw) -> _RowsOnRay:
    """Joins the cluster now (a wrong address fails before any work); inside `with`, clustering
    assigns the rows outside its fitted sample on Ray, with the same results as here."""
    return _RowsOnRay(row_engine(address, workers, **kw))


STAGE_BYTES = 256 << 20  # a row selection larger than this is staged on disk, not copied into memory


class StagedRows(np.memmap):
    """A read-only float32 memory map of vectors staged in a folder. A large selection of its rows
    (X[rows] or X[mask] above STAGE_BYTES: cluster.py's copy joining clusters X[keep], nearly
    all of it) is staged as another map instead of copied into memory. Values are numpy's own;
    only where they live differs."""

    def __getitem__(self, key):
        folder = getattr(self, "stage_dir", None)
        if folder is not None and isinstance(key, np.ndarray) and key.ndim == 1 and self.ndim == 2:
            rows = np.flatnonzero(key) if key.dtype == bool else key
            if len(rows) * self.shape[1] * self.itemsize > STAGE_BYTES:
                base = self.view(np.memmap)

                def fill(out):
                    for i in range(0, len(rows), 65536):
                        out[i:i + 65536] = base[rows[i:i + 65536]]

                return stage_rows(folder, fill, len(rows), self.shape[1])
            return self.view(np.ndarray)[key]  # a small selection: an ordinary array, in memory
        return super().__getitem__(key)


def stage_rows(folder: Path, fill, n: int, dim: int) -> StagedRows:
    """An n x dim float32 file in `folder`, written by fill(writable map), mapped read-only; the file
    is removed at once (it lasts as long as the map), and any a killed run left goes."""
    from organizer.store import disk_full_guard

    folder = Path(folder)
    for old in folder.glob(".cluster-*.f32"):
        if not _pid_alive(old.stem.split("-")[1]):
            old.unlink(missing_ok=True)
    path = folder / f".cluster-{os.getpid()}-{os.urandom(4).hex()}.f32"
    try:
        with disk_full_guard(folder, f"staged vectors {path.name}"):
            out = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, dim))
            fill(out)
            out.flush()
            del out
        X = np.memmap(path, dtype=np.float32, mode="r", shape=(n, dim)).view(StagedRows)
        X.stage_dir = folder
    finally:
        try:
            path.unlink(missing_ok=True)
        except OSError:  # a system that cannot remove an open file: the next run does
            pass
    return X


def staged_vectors(store: Store) -> tuple[list[str], np.ndarray]:
    """Every present image's vector, in `vectors.load_vectors`' order, staged (`stage_rows`) in the
    store's folder: 4 bytes a dimension an image on disk. Clustering takes its sample and then
    the other rows part by part, so the driver never holds the whole matrix in memory."""
    from organizer.store.vectors import iter_present_vectors

    rows = store.db.execute(
        "SELECT i.rowid, i.id FROM images i WHERE i.shard IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM files f WHERE f.image_id = i.id AND f.status='ok') ORDER BY i.rowid").fetchall()
    ids = [r[1] for r in rows]
    dim = int(store.get_meta("dim") or 0)
    if not ids:
        return [], np.zeros((0, dim), np.float32)
    rowids = np.array([r[0] for r in rows], np.int64)
    del rows

    def fill(out):  # shard by shard, each row to its place in the id order
        for shard_rowids, vectors in iter_present_vectors(store):
            out[np.searchsorted(rowids, shard_rowids)] = vectors

    return ids, stage_rows(store.root, fill, len(ids), dim)


def _pid_alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def cluster_inputs(store: Store, *, address: str | None = None, workers: int | None = None):
    """(ids, vectors, context) for `Library.cluster(engine="ray")`: the cluster joined first, the
    vectors staged as a memory map, and the context that runs the assignment on Ray."""
    on = rows_on_ray(address, workers)
    ids, X = staged_vectors(store)
    return ids, X, on
