"""Vector shards: append-only float16 files that, with the `images` table, hold every vector.

A shard is written to a temporary name, fsynced and renamed, and only then recorded in
SQLite, so a crash leaves either a complete shard that the database knows or an orphan
file that nothing points at (cleaned up on the next write)."""
from __future__ import annotations

import hashlib
import os

import numpy as np

from organizer.store.db import Store
from organizer.store.errors import StoreError, disk_full_guard
from organizer.store.files import replace_file

DTYPE = np.float16
REPAIR_HINT = "run `organizer repair` to re-embed its images from their files"


def _shard_path(store: Store, shard: int):
    return store.vectors_dir / f"{shard:06d}.f16"


def write_shard(store: Store, vectors: np.ndarray) -> int:
    """Persist (n, dim) vectors as a new shard; returns its number. The caller records rows."""
    store.vectors_dir.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(vectors, dtype=DTYPE)
    row = store.db.execute("SELECT MAX(shard) FROM shards").fetchone()
    taken = {int(p.stem) for p in store.vectors_dir.glob("*.f16") if p.stem.isdigit()}
    shard = max([row[0] or 0, *taken]) + 1  # never reuse a number an orphan file holds
    path = _shard_path(store, shard)
    tmp = path.with_suffix(".tmp")
    payload = data.tobytes()
    try:
        with disk_full_guard(store, f"vector file {path.name}"):
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            replace_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # give the space back; nothing points at it
        raise
    store.db.execute("INSERT INTO shards(shard, rows, dim, sha256) VALUES(?,?,?,?)",
                     (shard, data.shape[0], data.shape[1], hashlib.sha256(payload).hexdigest()))
    return shard


def _read_shard(store: Store, shard: int, rows: int, dim: int, verify: bool) -> np.ndarray:
    path = _shard_path(store, shard)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"vector file {path} is missing: {REPAIR_HINT}") from None
    if len(raw) != rows * dim * np.dtype(DTYPE).itemsize:
        raise StoreError(f"vector file {path} is truncated: {REPAIR_HINT}")
    if verify:
        expected = store.db.execute("SELECT sha256 FROM shards WHERE shard=?", (shard,)).fetchone()[0]
        if hashlib.sha256(raw).hexdigest() != expected:
            raise StoreError(f"vector file {path} is corrupt: {REPAIR_HINT}")
    return np.frombuffer(raw, dtype=DTYPE).reshape(rows, dim)


def load_vectors(store: Store, image_ids: list[str] | None = None, *, verify: bool = False
                 ) -> tuple[list[str], np.ndarray]:
    """Vectors as float32 for the given images (default: every present image), in that order."""
    if image_ids is None:
        image_ids = store.present_image_ids()
    dim = int(store.get_meta("dim") or 0)
    out = np.zeros((len(image_ids), dim), np.float32)
    if not image_ids:
        return [], out
    where = {}
    for chunk in range(0, len(image_ids), 900):
        part = image_ids[chunk:chunk + 900]
        q = f"SELECT id, shard, shard_row FROM images WHERE id IN ({','.join('?' * len(part))})"
        for r in store.db.execute(q, part):
            where[r[0]] = (r[1], r[2])
    missing = [i for i in image_ids if where.get(i, (None,))[0] is None]
    if missing:
        raise StoreError(f"{len(missing)} image(s) have no vector (e.g. {missing[0]}): run `organizer index` again")
    shards = {r[0]: (r[1], r[2]) for r in store.db.execute("SELECT shard, rows, dim FROM shards")}
    by_shard: dict[int, list[tuple[int, int]]] = {}
    for pos, image_id in enumerate(image_ids):
        shard, row = where[image_id]
        by_shard.setdefault(shard, []).append((pos, row))
    for shard, pairs in by_shard.items():
        rows, sdim = shards[shard]
        data = _read_shard(store, shard, rows, sdim, verify)
        pos, idx = np.array(pairs).T
        out[pos] = data[idx]
    return list(image_ids), out


def iter_present_vectors(store: Store, *, verify: bool = False):
    """Yield (rowids int64, vectors float32) shard by shard for every present image, without ever
    holding more than one shard in float32: what building a search index over a million needs."""
    shards = {r[0]: (r[1], r[2]) for r in store.db.execute("SELECT shard, rows, dim FROM shards")}
    cursor = store.db.execute(
        "SELECT i.rowid, i.shard, i.shard_row FROM images i WHERE i.shard IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM files f WHERE f.image_id = i.id AND f.status='ok') ORDER BY i.shard, i.shard_row")
    current, rowids, rows = None, [], []

    def emit():
        data = _read_shard(store, current, *shards[current], verify)
        return np.array(rowids, np.int64), data[np.array(rows, np.int64)].astype(np.float32)

    for rowid, shard, row in cursor:
        if shard != current and rowids:
            yield emit()
            rowids, rows = [], []
        current = shard
        rowids.append(rowid)
        rows.append(row)
    if rowids:
        yield emit()


def count_present(store: Store) -> int:
    return store.db.execute(
        "SELECT COUNT(*) FROM images i WHERE i.shard IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM files f WHERE f.image_id = i.id AND f.status='ok')").fetchone()[0]


def remove_orphans(store: Store) -> int:
    """Delete shard files (and temp files) that the database does not know."""
    if not store.vectors_dir.exists():
        return 0
    known = {r[0] for r in store.db.execute("SELECT shard FROM shards")}
    removed = 0
    for p in store.vectors_dir.iterdir():
        if p.suffix == ".tmp" or (p.suffix == ".f16" and p.stem.isdigit() and int(p.stem) not in known):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


# -- damage ------------------------------------------------------------------------------
def check_shards(store: Store, *, checksums: bool = True) -> list[tuple[int, str]]:
    """(shard, what is wrong) for every recorded shard that is missing, of the wrong size or,
    with `checksums`, whose bytes no longer match. Shards are the only copy of the vectors, so
    a damaged one is re-embedded from the images' files, never trusted."""
    bad = []
    for shard, rows, dim, sha in store.db.execute("SELECT shard, rows, dim, sha256 FROM shards ORDER BY shard"):
        path = _shard_path(store, shard)
        expected = rows * dim * np.dtype(DTYPE).itemsize
        try:
            size = path.stat().st_size
        except OSError:
            bad.append((shard, "missing"))
            continue
        if size != expected:
            bad.append((shard, f"truncated ({size} of {expected} bytes)" if size < expected else "wrong size"))
        elif checksums:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    digest.update(block)
            if digest.hexdigest() != sha:
                bad.append((shard, "checksum mismatch"))
    return bad


def drop_shards(store: Store, shards: list[int]) -> int:
    """Forget damaged shards: their images lose their vectors (labels and everything else stay)
    and the files pointing at them are marked for re-reading, so the next `index` embeds them
    again. Returns the number of images affected."""
    if not shards:
        return 0
    marks = ",".join("?" * len(shards))
    with store.transaction():
        affected = store.db.execute(f"SELECT COUNT(*) FROM images WHERE shard IN ({marks})", shards).fetchone()[0]
        # mtime -1 never matches a real file: the indexer reads it again and, finding content
        # without a vector, embeds it
        store.db.execute(f"UPDATE files SET mtime_ns=-1 WHERE image_id IN (SELECT id FROM images WHERE shard IN "
                         f"({marks}))", shards)
        store.db.execute(f"UPDATE images SET shard=NULL, shard_row=NULL WHERE shard IN ({marks})", shards)
        store.db.execute(f"DELETE FROM shards WHERE shard IN ({marks})", shards)
        store.bump_version()
    for shard in shards:
        _shard_path(store, shard).unlink(missing_ok=True)
    return affected


def heal_shards(store: Store) -> int:
    """The cheap check every `index` run makes (sizes, no hashing): drop missing or truncated
    shards so this run re-embeds their images. Returns the number of images affected."""
    return drop_shards(store, [s for s, _ in check_shards(store, checksums=False)])
