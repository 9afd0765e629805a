"""Indexing: scan a folder, read and decode new files in worker processes, embed in
batches, write vectors and rows. Reading, computing and writing are separate steps, and a
file that fails is recorded with its error; it never stops the batch.

Incremental: a file whose size and mtime are unchanged is not read again; a file whose
content is already known (renamed, moved, copied) reuses its vector and its labels; a
file that disappeared is marked missing, not forgotten.
"""
from __future__ import annotations

import fcntl
import os
import re
import stat
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from organizer.ingest.read import init_worker, read_files
from organizer.store import Store, StoreError, disk_full_guard

FLUSH_EVERY = 512            # images per shard/commit: the unit of progress kept after a crash
FLUSH_ENV = "ORGANIZER_FLUSH_EVERY"  # override (tests use a small value to interrupt between commits)
STREAMS_ENV = "ORGANIZER_STREAMS"    # override the number of batches embedded at once
PROFILE_ENV = "ORGANIZER_PROFILE"    # a file path: seconds per stage of this run, as JSON (benchmarks)
START_METHOD_ENV = "ORGANIZER_START_METHOD"  # "spawn": never fork the decode processes
TASK_FILES = 16              # files per worker task
CACHE_DIR = "cache"          # under the store: the ONNX export of the backbone (a cache, rebuildable)
MISSING_REFUSE_FRACTION = 0.5


def flush_every() -> int:
    raw = os.environ.get(FLUSH_ENV, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else FLUSH_EVERY


class IndexingError(StoreError):
    pass


@dataclass
class IndexReport:
    backbone: str = ""
    runtime: str = ""        # what ran the network (onnxruntime, torch-bf16, torch), when something was embedded
    scanned: int = 0
    unchanged: int = 0
    reused: int = 0          # new paths whose content was already embedded (renames, copies)
    embedded: int = 0
    errors: int = 0
    missing: int = 0
    healed: int = 0          # images whose vector file was damaged, re-embedded from their files
    seconds: float = 0.0
    error_files: list[tuple[str, str]] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage (see write_profile)
    start_method: str = ""   # how the local engine's decode processes started (fork or spawn)

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def summary(self) -> str:
        return (f"{self.scanned} files: {self.embedded} embedded, {self.reused} reused, {self.unchanged} unchanged, "
                f"{self.errors} failed, {self.missing} missing ({self.seconds:.1f}s, backbone {self.backbone}"
                + (f" on {self.runtime})" if self.runtime else ")")
                + (f"; {self.healed} images had a damaged vector file and were re-read" if self.healed else ""))


# -- scanning -------------------------------------------------------------------------
def scan(root: Path, *, follow_links: bool = False, exclude: Path | None = None) -> Iterator[tuple[str, int, int]]:
    """Yield (relative path, size, mtime_ns) of files with a supported extension.

    Symlinks are skipped unless `follow_links`; then they are followed wherever they lead
    (also out of `root`: that is what asking means), but every directory is entered once (by
    device and inode), so link loops terminate. The real tree is walked before any linked
    directory, so a file reachable both ways keeps its real path. Broken links are skipped.
    Names are yielded as the OS gives them (see `escape_name` for those not valid UTF-8)."""
    from organizer.ingest.decode import SUPPORTED_EXTENSIONS

    root = root.resolve()
    seen_dirs: set[tuple[int, int]] = set()
    if exclude is not None:
        try:
            st = exclude.stat()
            seen_dirs.add((st.st_dev, st.st_ino))  # never index the store, however it is reached
        except OSError:
            pass
    stack, linked = [(root, "")], []
    while stack or linked:
        folder, rel_dir = stack.pop() if stack else linked.pop(0)
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = rel_dir + entry.name
            try:
                is_link = entry.is_symlink()
                if is_link and not follow_links:
                    continue
                if entry.is_dir(follow_symlinks=True):
                    (linked if is_link else stack).append((Path(entry.path), rel + "/"))
                    continue
                if os.path.splitext(entry.name)[1].lower() not in SUPPORTED_EXTENSIONS:
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError:
                continue  # broken link or vanished file
            if not stat_is_file(st):
                continue
            yield rel, st.st_size, st.st_mtime_ns


def stat_is_file(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)  # not a FIFO or device named .jpg (reading one would block)


BAD_NAME_ERROR = ("file name is not valid UTF-8, so it cannot be stored or typed back; rename it "
                  "(e.g. with convmv) and run `organizer index` again")


def escape_name(rel: str) -> str:
    """`rel` itself when it is valid UTF-8, else a printable form with the undecodable bytes
    as \\xNN. SQLite TEXT must be UTF-8, and a name that cannot be typed back cannot be labeled
    by path, so such a file is recorded as an error under this form, asking for a rename."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return os.fsencode(rel).decode("utf-8", "backslashreplace")


# -- the pipeline ----------------------------------------------------------------------
STALE_TEMP_SECONDS = 600
_PID_TEMP = re.compile(r"\.(\d+)(?:\.json)?\.tmp$")  # what embed.runtime writes before its renames


def remove_stale_temps(folder: Path, *, min_age: float = STALE_TEMP_SECONDS) -> int:
    """Delete `NAME.<pid>.tmp` files of an ONNX export that was killed (each as large as the
    network). Only when that process is gone and the file has not changed for `min_age`
    seconds: an export running now (another command, another machine sharing the store) keeps
    its file, and losing it would mark ONNX as failed for this store."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        m = _PID_TEMP.search(entry.name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # that process still runs
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, ValueError):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime >= min_age:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
    return removed


_HELD_LOCKS: set[int] = set()  # descriptors of the StoreLocks this process holds


def _drop_locks_in_child() -> None:
    """A forked decode process closes its copies of the held locks' descriptors, so the lock
    lives exactly as long as the indexer holding it, as with spawned workers. Closing (never
    LOCK_UN, which would release it for the parent too) only drops the child's reference."""
    for fd in _HELD_LOCKS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_locks_in_child)


class StoreLock:
    """One indexer per store at a time (readers are never blocked)."""

    def __init__(self, store: Store):
        self.path = store.root / "index.lock"

    def __enter__(self):
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise IndexingError("another `organizer index` is running on this store; wait for it to finish") from None
        _HELD_LOCKS.add(self.fd)
        return self

    def __exit__(self, *exc):
        _HELD_LOCKS.discard(self.fd)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def check_folder(store: Store, folder: Path) -> Path:
    if not folder.exists():
        raise IndexingError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise IndexingError(f"not a folder: {folder}")
    folder = folder.resolve()
    if store.root == folder or folder in store.root.parents:
        raise IndexingError(f"the store {store.root} is inside the image folder {folder}; organizer never writes "
                          "there: put the store elsewhere with --store")
    known = store.library_root
    if known is not None and known != folder:
        raise IndexingError(f"this store indexes {known}, not {folder}: use another --store for a second library")
    return folder


def index_folder(store: Store, folder: str | os.PathLike, *, backbone: str = "auto", workers: int | None = None,
                 batch_size: int = 32, allow_missing: bool = False, follow_links: bool = False,
                 max_pixels: int | None = None, thumb_size: int = 256,
                 progress: Callable[[int, int], None] | None = None, produce=None) -> IndexReport:
    """produce: the read (and maybe embed) step, default `produce_local` (decode processes here,
    inference threads in the sink); engine_ray/index.py: ray_producer runs it on a Ray cluster's actors.
    Whichever produces, this process alone writes the store."""
    from organizer.embed import get_embedder
    from organizer.embed.registry import canonical
    from organizer.store.vectors import heal_shards, remove_orphans

    started = time.time()
    report = IndexReport()
    root = check_folder(store, Path(folder).expanduser())
    produce = produce or produce_local
    with StoreLock(store), disk_full_guard(store, "the store"):
        remove_orphans(store)
        remove_stale_temps(store.root / CACHE_DIR / "onnx")
        healed = heal_shards(store)  # a missing or truncated shard: its images are read again below
        known_files = store.files_by_path()
        seen: dict[str, tuple[int, int]] = {}
        bad_names: set[str] = set()
        t_scan = time.perf_counter()
        for rel, size, mtime in scan(root, follow_links=follow_links, exclude=store.root):
            safe = escape_name(rel)
            if safe != rel:
                bad_names.add(safe)
            seen[safe] = (size, mtime)
        report.scanned = len(seen)
        report.add("scan", time.perf_counter() - t_scan)
        present_before = [p for p, f in known_files.items() if f.status == "ok"]
        vanished = [p for p in present_before if p not in seen]
        if present_before and len(vanished) > MISSING_REFUSE_FRACTION * len(present_before) and not allow_missing:
            raise IndexingError(f"{len(vanished)} of {len(present_before)} indexed files are gone from {root} "
                              "(unmounted or emptied folder?); nothing was changed. Re-run with --allow-missing "
                              "if they were really removed.")
        if not seen and not known_files:
            raise IndexingError(f"no images found in {root} (supported: jpg, png, webp, bmp, gif, tiff)")

        to_read = []
        for rel, (size, mtime) in seen.items():
            old = known_files.get(rel)
            if old and old.size == size and old.mtime_ns == mtime and old.status in ("ok", "error"):
                report.unchanged += 1
            else:
                to_read.append(rel)

        embedder = None
        if to_read or store.backbone is None:  # an unchanged library never loads a network
            embedder = get_embedder(backbone, store_backbone=store.backbone, cache_dir=store.root / CACHE_DIR)
        elif backbone != "auto" and canonical(backbone) != store.backbone:
            get_embedder(backbone, store_backbone=store.backbone)  # raises the mismatch error
        report.backbone = embedder.name if embedder else store.backbone
        with store.transaction():
            if store.backbone is None:
                store.set_meta("backbone", embedder.name)
                store.set_meta("dim", str(embedder.dim))
            store.set_meta("library_root", str(root))
            now = time.time()
            store.db.executemany("UPDATE files SET status='missing', last_seen=? WHERE path=? AND status!='missing'",
                                 [(now, p) for p in known_files if p not in seen])
        report.missing = sum(1 for p, f in known_files.items() if p not in seen)

        if to_read:
            _run_pipeline(store, root, to_read, seen, embedder, report, workers=workers, batch_size=batch_size,
                          max_pixels=max_pixels, thumb_size=thumb_size, progress=progress, bad_names=bad_names,
                          previous={p: f.image_id for p, f in known_files.items()}, produce=produce)
        report.healed = healed
    report.errors = store.counts()["error"]
    report.error_files = [(r[0], r[1]) for r in store.db.execute(
        "SELECT path, error FROM files WHERE status='error' ORDER BY path")]
    report.seconds = time.time() - started
    if embedder is not None and report.embedded and not report.runtime:
        report.runtime = embedder.runtime
    write_profile(report)
    return report


def write_profile(report: IndexReport) -> None:
    """With $ORGANIZER_PROFILE set, the run's stage seconds go to that file: scan (walk and
    stat), first_items (from the pipeline's start to the first decoded files: worker start,
    first reads), wait (the sink waiting for decoded files after that), embed (inference,
    summed over streams), write (shards and SQLite), total (inside index_folder)."""
    path = os.environ.get(PROFILE_ENV, "").strip()
    if not path:
        return
    import json

    from organizer.store import atomic_write

    data = {**{k: round(v, 4) for k, v in report.stages.items()}, "total": round(report.seconds, 4),
            "embedded": report.embedded, "runtime": report.runtime, "start_method": report.start_method}
    atomic_write(path, lambda f: f.write(json.dumps(data).encode()))


def _run_pipeline(store, root, to_read, seen, embedder, report, *, workers, batch_size, max_pixels, thumb_size,
                  progress, bad_names=frozenset(), previous=None, produce=None):
    """Feed what `produce` reads (and maybe embeds) to the sink, which writes the store.

    produce(root, rels, embedder, known, workers=, max_pixels=, thumb_size=, report=) yields
    lists of items as `read_files` makes them; an item may also carry its "vector" and "norm"
    (an engine that embeds where it decodes), and then the sink only writes it."""
    produce = produce or produce_local
    unreadable = [{"path": rel, "error": f"{rel}: {BAD_NAME_ERROR}"} for rel in to_read if rel in bad_names]
    to_read = [rel for rel in to_read if rel not in bad_names]
    streams = inference_streams(workers or default_workers())
    done = 0
    with _Sink(store, embedder, seen, report, batch_size, streams, previous or {}) as sink:
        sink.add(unreadable)
        items_stream = produce(root, to_read, embedder, sink.known, workers=workers, max_pixels=max_pixels,
                               thumb_size=thumb_size, report=report)
        try:
            t, first = time.perf_counter(), True
            for items in items_stream:
                now = time.perf_counter()
                report.add("first_items" if first else "wait", now - t)
                first = False
                sink.add(items)
                done += len(items)
                if progress:
                    progress(done, len(to_read))
                t = time.perf_counter()
        finally:
            items_stream.close()  # stops the engine's workers before the sink lets go
        sink.flush()


def produce_local(root, to_read, embedder, known, *, workers, max_pixels, thumb_size, report=None):
    """The local engine's reading step: decode processes here; the sink embeds on threads."""
    import gc
    import multiprocessing as mp

    n_workers = workers or default_workers()
    if hasattr(embedder, "use_threads") and not os.environ.get("ORGANIZER_THREADS"):
        # Throughput comes from independent streams, not from threads inside one operator: those
        # wait for each other at every operator, so one thread preempted by a decoder (or any
        # other program) stalls them all.
        embedder.use_threads(1)
    method = worker_start_method()
    if report is not None:
        report.start_method = method
    tasks = [to_read[i:i + TASK_FILES] for i in range(0, len(to_read), TASK_FILES)]
    window = max(4, 2 * n_workers)  # bounded read-ahead keeps memory flat
    with ProcessPoolExecutor(n_workers, mp_context=mp.get_context(method), initializer=init_worker,
                             initargs=(known, os.getpid())) as pool:
        def submit(i: int) -> Future:
            return pool.submit(read_files, str(root), tasks[i], embedder.preprocess, thumb_size, max_pixels)

        futures: list[Future] = []
        if tasks:
            if method == "fork":
                # The children's garbage collector leaves the objects inherited from here alone,
                # so their pages stay shared instead of being copied when a collection visits them.
                gc.freeze()
            try:
                futures.append(submit(0))  # with fork, this forks every worker
            finally:
                if method == "fork":
                    gc.unfreeze()
            if hasattr(embedder, "prepare"):
                # Open the inference session while the decoders start: only now, since no thread
                # may exist in this process when it forks.
                import threading

                threading.Thread(target=_quietly, args=(embedder.prepare,), name="prepare-embedder",
                                 daemon=True).start()
        next_task = len(futures)
        while next_task < len(tasks) or futures:
            while next_task < len(tasks) and len(futures) < window:
                futures.append(submit(next_task))
                next_task += 1
            yield futures.pop(0).result()


def worker_start_method() -> str:
    """How the decode processes start: "fork" on Linux when this process runs a single Python
    thread, else "spawn".

    Forking skips a fresh interpreter and its imports in each decoder (about 0.2 s of CPU each).
    It is safe only with one thread: a lock another thread holds at the fork stays locked in the
    child for good. The pool forks all its workers at the first submit, before its own manager
    thread starts, and the session's head start waits for that. A library user indexing from a
    threaded program (the app) gets spawn, as before. The children only run Python, numpy and
    Pillow, never ONNX Runtime or PyTorch; numpy's OpenBLAS threads (native, not counted here)
    are stopped and restarted around a fork by OpenBLAS itself (Python 3.12+ counts them and may
    emit a DeprecationWarning). $ORGANIZER_START_METHOD=spawn forces spawn."""
    import multiprocessing as mp
    import sys
    import threading

    if os.environ.get(START_METHOD_ENV, "").strip() == "spawn" or not sys.platform.startswith("linux") \
            or "fork" not in mp.get_all_start_methods():  # macOS: system libraries are not fork-safe
        return "spawn"
    return "fork" if threading.active_count() == 1 else "spawn"


def _quietly(fn) -> None:
    """Run a head start; if it fails, the first batch builds the runner itself and reports why."""
    try:
        fn()
    except Exception:
        pass


def default_workers() -> int:
    """Decode processes: half the cores, at least 2, at most 8."""
    return min(8, max(2, (os.cpu_count() or 2) // 2))


def inference_streams(n_workers: int) -> int:
    """Batches embedded at once, each on one thread: the cores the decoders leave, at least 2.

    On 2 cores this is 2 decoders and 2 streams. Decoders run niced, so inference comes first
    and decoding fills the time it leaves; small photos keep both cores on inference, 12 MP
    JPEGs shift them to decoding. Measured against one stream of 1 or 2 intra-op threads and
    against 1 decoder: see benchmarks/README.md."""
    raw = os.environ.get(STREAMS_ENV, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return min(8, max(2, (os.cpu_count() or 2) - n_workers))


class _Sink:
    """Embeds decoded images batch by batch as they arrive and commits every FLUSH_EVERY.
    Batches run on `streams` threads (ONNX Runtime and PyTorch release the GIL), at most
    `streams` + 1 batches of pixels exist at once, and at most FLUSH_EVERY vectors and
    thumbnails wait for a commit.

    A commit is one shard plus, in one transaction, the image rows and the file rows of every
    file read since the previous commit, so an interrupted run resumes at the last commit."""

    def __init__(self, store: Store, embedder, seen, report: IndexReport, batch_size: int, streams: int = 1,
                 previous: dict[str, str | None] | None = None):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.store, self.embedder, self.seen, self.report = store, embedder, seen, report
        self.previous = previous or {}             # path -> image it pointed at before this run
        self.flush_every = flush_every()
        self.batch_size = min(batch_size, self.flush_every)  # a commit never waits for more than it holds
        self.streams = max(1, streams)
        self.pool = ThreadPoolExecutor(self.streams, thread_name_prefix="embed")
        self.inflight: deque = deque()             # (items, future of (vectors, norms)) in submission order
        self.known = store.embedded_image_ids()    # committed vectors
        self.files: list[dict] = []                # file rows waiting for the next commit
        self.waiting: list[dict] = []              # decoded, not yet submitted
        self.fresh: dict[str, dict] = {}           # hash -> item embedded (or on its way) since the last commit
        self.vectors: list[np.ndarray] = []
        self.norms: list[np.ndarray] = []
        self.order: list[str] = []                 # hashes in self.vectors' row order

    def __enter__(self) -> "_Sink":
        return self

    def __exit__(self, *exc) -> None:
        for _, fut in self.inflight:
            fut.cancel()
        self.pool.shutdown(wait=True)

    def add(self, items: list[dict]) -> None:
        # Item by item, not task by task: a commit holds at most FLUSH_EVERY new vectors even
        # when that is smaller than a worker task (TASK_FILES).
        for it in items:
            self.files.append(it)
            if "vector" in it:  # embedded where it was decoded (Ray engine): only written here
                vector, norm = it.pop("vector"), it.pop("norm")
                if it["hash"] not in self.known and it["hash"] not in self.fresh:
                    self.fresh[it["hash"]] = it
                    self.vectors.append(np.asarray(vector, np.float32)[None])
                    self.norms.append(np.asarray([norm], np.float32))
                    self.order.append(it["hash"])
                else:
                    it.pop("thumb", None)
            elif "pixels" in it and it["hash"] not in self.known and it["hash"] not in self.fresh:
                self.fresh[it["hash"]] = it
                self.waiting.append(it)
                if len(self.waiting) >= self.batch_size:
                    self._embed(self.batch_size)
            else:
                it.pop("pixels", None)
                it.pop("thumb", None)
            # Renames and copies carry no pixels: commit them now and then too, so a crash loses little.
            if len(self.order) + self.batch_size * len(self.inflight) >= self.flush_every \
                    or len(self.files) >= 8 * self.flush_every:
                self.flush()

    def _embed(self, n: int) -> None:
        batch, self.waiting = self.waiting[:n], self.waiting[n:]
        crops = [it.pop("pixels") for it in batch]
        self.inflight.append((batch, self.pool.submit(self._run, crops)))
        while len(self.inflight) > self.streams:
            self._collect()

    def _run(self, crops: list[np.ndarray]):
        t = time.perf_counter()
        vectors, norms = self.embedder.embed_arrays(self.embedder.preprocess.normalize(np.stack(crops)))
        return vectors, norms, time.perf_counter() - t

    def _collect(self) -> None:
        batch, fut = self.inflight.popleft()
        v, norms, seconds = fut.result()
        self.report.add("embed", seconds)
        self.vectors.append(v)
        self.norms.append(norms)
        self.order.extend(it["hash"] for it in batch)

    def flush(self) -> None:
        from organizer.store.vectors import write_shard

        while self.waiting:
            self._embed(self.batch_size)
        while self.inflight:
            self._collect()
        if not self.files:
            return
        store, report = self.store, self.report
        t_write = time.perf_counter()
        norms = np.concatenate(self.norms) if self.order else np.zeros(0)
        now = time.time()
        with store.transaction():
            # The shard's row commits with the rows that use it: a crash before COMMIT leaves at
            # most a shard file nothing records (removed by the next run), never a recorded
            # shard that no image points at.
            shard = write_shard(store, np.concatenate(self.vectors)) if self.order else None
            store.db.executemany(
                "INSERT INTO images(id, width, height, format, shard, shard_row, feature_norm, thumbnail, created_at) "
                "VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET shard=excluded.shard, "
                "shard_row=excluded.shard_row, feature_norm=excluded.feature_norm, thumbnail=excluded.thumbnail",
                [(h, it["width"], it["height"], it["format"], shard, row, float(norms[row]), it["thumb"], now)
                 for row, (h, it) in enumerate((h, self.fresh[h]) for h in self.order)])
            rows = []
            for it in self.files:
                size, mtime = self.seen[it["path"]]
                if "error" in it:
                    rows.append((it["path"], it.get("hash"), size, mtime, "error", it["error"], now))
                    continue
                rows.append((it["path"], it["hash"], size, mtime, "ok", None, now))
                if self.fresh.get(it["hash"]) is it:
                    continue  # counted as embedded
                # Not embedded by this file: a copy or rename of known content (or of a file
                # embedded a moment ago in this run), unless the path already held exactly this
                # content (touched, or back after going missing): then nothing changed.
                if self.previous.get(it["path"]) == it["hash"]:
                    report.unchanged += 1
                else:
                    report.reused += 1
            store.db.executemany(
                "INSERT INTO files(path, image_id, size, mtime_ns, status, error, last_seen) VALUES(?,?,?,?,?,?,?) "
                "ON CONFLICT(path) DO UPDATE SET image_id=excluded.image_id, size=excluded.size, "
                "mtime_ns=excluded.mtime_ns, status=excluded.status, error=excluded.error, "
                "last_seen=excluded.last_seen", rows)
            if self.order:
                store.bump_version()
        report.add("write", time.perf_counter() - t_write)
        report.embedded += len(self.order)
        self.known.update(self.order)
        self.files, self.fresh, self.vectors, self.norms, self.order = [], {}, [], [], []
