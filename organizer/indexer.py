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
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .store import Store, StoreError, content_hash

FLUSH_EVERY = 512            # images per shard/commit: the unit of progress kept after a crash
TASK_FILES = 16              # files per worker task
MISSING_REFUSE_FRACTION = 0.5


class IndexError_(StoreError):
    pass


@dataclass
class IndexReport:
    backbone: str = ""
    scanned: int = 0
    unchanged: int = 0
    reused: int = 0          # new paths whose content was already embedded (renames, copies)
    embedded: int = 0
    errors: int = 0
    missing: int = 0
    seconds: float = 0.0
    error_files: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.scanned} files: {self.embedded} embedded, {self.reused} reused, {self.unchanged} unchanged, "
                f"{self.errors} failed, {self.missing} missing ({self.seconds:.1f}s, backbone {self.backbone})")


# -- scanning -------------------------------------------------------------------------
def scan(root: Path, *, follow_links: bool = False, exclude: Path | None = None) -> Iterator[tuple[str, int, int]]:
    """Yield (relative path, size, mtime_ns) of files with a supported extension.

    Symlinked directories are not entered unless `follow_links`; even then a directory is
    entered once (by inode), so link loops terminate, and links leading outside `root`
    are skipped."""
    from .decode import SUPPORTED_EXTENSIONS

    root = root.resolve()
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
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
            path = Path(entry.path)
            if exclude is not None and path == exclude:
                continue
            try:
                is_link = entry.is_symlink()
                if is_link:
                    if not follow_links:
                        continue
                    target = path.resolve()
                    if root not in target.parents and target != root:
                        continue
                if entry.is_dir(follow_symlinks=follow_links):
                    stack.append(path)
                    continue
                if os.path.splitext(entry.name)[1].lower() not in SUPPORTED_EXTENSIONS:
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError:
                continue  # broken link or vanished file
            rel = path.relative_to(root).as_posix()
            yield rel, st.st_size, st.st_mtime_ns


# -- reading and decoding (runs in worker processes) ---------------------------------
_KNOWN: set[str] = set()


def _init_worker(known: set[str]) -> None:
    global _KNOWN
    _KNOWN = known


def read_files(root: str, rels: list[str], preprocess, thumb_size: int, max_pixels: int | None) -> list[dict]:
    from .decode import DecodeError, decode_image, make_thumbnail

    out = []
    for rel in rels:
        item: dict = {"path": rel}
        try:
            data = Path(root, rel).read_bytes()
        except OSError as e:
            item["error"] = f"cannot read {rel}: {e.strerror or e}"
            out.append(item)
            continue
        item["hash"] = content_hash(data)
        if item["hash"] in _KNOWN:
            out.append(item)
            continue
        try:
            decoded = decode_image(data, name=rel, min_side=max(preprocess.size, thumb_size), max_pixels=max_pixels)
            item["pixels"] = preprocess(decoded.image)
            item["thumb"] = make_thumbnail(decoded.image, thumb_size)
            item.update(width=decoded.width, height=decoded.height, format=decoded.format)
        except DecodeError as e:
            item["error"] = str(e)
        except Exception as e:  # a decoder bug must not stop the batch either
            item["error"] = f"{rel}: {type(e).__name__}: {e}"
        out.append(item)
    return out


# -- the pipeline ----------------------------------------------------------------------
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
            raise IndexError_("another `organizer index` is running on this store; wait for it to finish") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def check_folder(store: Store, folder: Path) -> Path:
    if not folder.exists():
        raise IndexError_(f"folder not found: {folder}")
    if not folder.is_dir():
        raise IndexError_(f"not a folder: {folder}")
    folder = folder.resolve()
    if store.root == folder or folder in store.root.parents:
        raise IndexError_(f"the store {store.root} is inside the image folder {folder}; organizer never writes "
                          "there: put the store elsewhere with --store")
    known = store.library_root
    if known is not None and known != folder:
        raise IndexError_(f"this store indexes {known}, not {folder}: use another --store for a second library")
    return folder


def index_folder(store: Store, folder: str | os.PathLike, *, backbone: str = "auto", workers: int | None = None,
                 batch_size: int = 32, allow_missing: bool = False, follow_links: bool = False,
                 max_pixels: int | None = None, thumb_size: int = 256,
                 progress: Callable[[int, int], None] | None = None) -> IndexReport:
    from .embed import get_embedder
    from .embed.registry import canonical
    from .vectors import remove_orphans

    started = time.time()
    report = IndexReport()
    root = check_folder(store, Path(folder).expanduser())
    with StoreLock(store):
        remove_orphans(store)
        known_files = store.files_by_path()
        seen: dict[str, tuple[int, int]] = {}
        for rel, size, mtime in scan(root, follow_links=follow_links, exclude=store.root):
            seen[rel] = (size, mtime)
        report.scanned = len(seen)
        present_before = [p for p, f in known_files.items() if f.status == "ok"]
        vanished = [p for p in present_before if p not in seen]
        if present_before and len(vanished) > MISSING_REFUSE_FRACTION * len(present_before) and not allow_missing:
            raise IndexError_(f"{len(vanished)} of {len(present_before)} indexed files are gone from {root} "
                              "(unmounted or emptied folder?); nothing was changed. Re-run with --allow-missing "
                              "if they were really removed.")
        if not seen and not known_files:
            raise IndexError_(f"no images found in {root} (supported: jpg, png, webp, bmp, gif, tiff)")

        to_read = []
        for rel, (size, mtime) in seen.items():
            old = known_files.get(rel)
            if old and old.size == size and old.mtime_ns == mtime and old.status in ("ok", "error"):
                report.unchanged += 1
            else:
                to_read.append(rel)

        embedder = None
        if to_read or store.backbone is None:  # an unchanged library never loads a network
            embedder = get_embedder(backbone, store_backbone=store.backbone)
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
                          max_pixels=max_pixels, thumb_size=thumb_size, progress=progress)
    report.errors = store.counts()["error"]
    report.error_files = [(r[0], r[1]) for r in store.db.execute(
        "SELECT path, error FROM files WHERE status='error' ORDER BY path")]
    report.seconds = time.time() - started
    return report


def _run_pipeline(store, root, to_read, seen, embedder, report, *, workers, batch_size, max_pixels, thumb_size,
                  progress):
    known = store.embedded_image_ids()
    n_workers = workers or max(1, min(4, (os.cpu_count() or 2) - 1))
    tasks = [to_read[i:i + TASK_FILES] for i in range(0, len(to_read), TASK_FILES)]
    window = max(4, 2 * n_workers)  # bounded read-ahead keeps memory flat
    pending_rows: list[dict] = []
    done = 0
    import multiprocessing as mp

    with ProcessPoolExecutor(n_workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(known,)) as pool:
        futures: list[Future] = []
        next_task = 0
        while next_task < len(tasks) or futures:
            while next_task < len(tasks) and len(futures) < window:
                futures.append(pool.submit(read_files, str(root), tasks[next_task], embedder.preprocess,
                                           thumb_size, max_pixels))
                next_task += 1
            items = futures.pop(0).result()
            pending_rows.extend(items)
            done += len(items)
            if sum("pixels" in r for r in pending_rows) >= FLUSH_EVERY or (not futures and next_task >= len(tasks)):
                _flush(store, embedder, pending_rows, seen, known, report, batch_size)
                pending_rows = []
            if progress:
                progress(done, len(to_read))
        if pending_rows:
            _flush(store, embedder, pending_rows, seen, known, report, batch_size)


def _flush(store: Store, embedder, items: list[dict], seen, known: set[str], report: IndexReport, batch_size: int):
    """Embed the decoded items, write one shard, then record every item in one transaction."""
    from .vectors import write_shard

    fresh: dict[str, dict] = {}
    for item in items:
        if "pixels" in item and item["hash"] not in known and item["hash"] not in fresh:
            fresh[item["hash"]] = item
    order = list(fresh)
    vectors, norms = [], []
    for i in range(0, len(order), batch_size):
        batch = np.stack([fresh[h]["pixels"] for h in order[i:i + batch_size]])
        v, n = embedder.embed_arrays(batch)
        vectors.append(v)
        norms.append(n)
    shard = write_shard(store, np.concatenate(vectors)) if order else None
    norms = np.concatenate(norms) if order else np.zeros(0)
    now = time.time()
    with store.transaction():
        for row, h in enumerate(order):
            it = fresh[h]
            store.db.execute(
                "INSERT INTO images(id, width, height, format, shard, shard_row, feature_norm, thumbnail, created_at) "
                "VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET shard=excluded.shard, "
                "shard_row=excluded.shard_row, feature_norm=excluded.feature_norm, thumbnail=excluded.thumbnail",
                (h, it["width"], it["height"], it["format"], shard, row, float(norms[row]),
                 it["thumb"], now))
        for it in items:
            size, mtime = seen[it["path"]]
            if "error" in it:
                status, image_id, error = "error", it.get("hash"), it["error"]
            else:
                status, image_id, error = "ok", it["hash"], None
                if it["hash"] in known:
                    report.reused += 1
            store.db.execute(
                "INSERT INTO files(path, image_id, size, mtime_ns, status, error, last_seen) VALUES(?,?,?,?,?,?,?) "
                "ON CONFLICT(path) DO UPDATE SET image_id=excluded.image_id, size=excluded.size, "
                "mtime_ns=excluded.mtime_ns, status=excluded.status, error=excluded.error, last_seen=excluded.last_seen",
                (it["path"], image_id, size, mtime, status, error, now))
        if order:
            store.bump_version()
    report.embedded += len(order)
    known.update(order)
