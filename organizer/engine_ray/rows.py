"""Clustering's per-row work (UMAP placement, the vote) on Ray, and staging vectors on disk."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from organizer.engine_ray import connect, map_row_chunks
from organizer.store import Store


# -- cluster: the rows outside the fitted sample ------------------------------------------
ROWS_PER_TASK = 4096   # 20 MB of 1280-d float32 a task; a multiple of cluster._BLOCK (results are then bit-equal)
ROWS_PER_TASK_ENV = "ORGANIZER_RAY_ROWS_PER_TASK"  # smaller parts: more tasks (the fault tests want many)


def row_engine(address: str | None = None, workers: int | None = None, rows_per_task: int | None = None):
    """A `cluster.ROW_ENGINE` on Ray: the per-row steps of the rows outside the fitted sample
    (their UMAP placement, their group-tree vote) as one task per `rows_per_task` rows. The
    driver reads a part's rows (X may be a memory map) only when its task is sent."""
    from organizer.discover.cluster import _BLOCK

    if rows_per_task is None:
        rows_per_task = int(os.environ.get(ROWS_PER_TASK_ENV, "") or ROWS_PER_TASK)
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
    """Every present image's vector in content-hash (id) order, as the local `Library.cluster` reads
    them, staged (`stage_rows`) in the store's folder: 4 bytes a dimension an image on disk.
    Clustering takes its sample and then the other rows part by part, so the driver never holds
    the whole matrix in memory."""
    from organizer.store.vectors import iter_present_vectors

    rows = store.db.execute(
        "SELECT i.rowid, i.id FROM images i WHERE i.shard IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM files f WHERE f.image_id = i.id AND f.status='ok') ORDER BY i.id").fetchall()
    ids = [r[1] for r in rows]
    dim = int(store.get_meta("dim") or 0)
    if not ids:
        return [], np.zeros((0, dim), np.float32)
    rowids = np.array([r[0] for r in rows], np.int64)
    del rows
    by_rowid = np.argsort(rowids, kind="stable")
    sorted_rowids = rowids[by_rowid]

    def fill(out):  # shard by shard, each row to its place in the id order
        for shard_rowids, vectors in iter_present_vectors(store):
            out[by_rowid[np.searchsorted(sorted_rowids, shard_rowids)]] = vectors

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
