"""The store: SQLite (WAL) plus vector shard files. Everything else is a cache.

Layout of a store directory:
    organizer.db          SQLite: files, images, labels, clusterings, models, predictions
    vectors/NNNNNN.f16    float16 row-major vector shards, written once, never modified
    models/               trained classifiers as .npz arrays + .json metadata
    index.faiss           FAISS search index (cache, rebuilt from the store)

Identity: an image is its content hash (`images.id`). A file (`files.path`) points at
an image; two identical files share one image, a renamed file keeps its image, and
labels attach to images, so names survive renames and re-clustering.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 2  # 2: the history table (older stores gain it when opened)
DB_NAME = "organizer.db"
BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    rowid INTEGER PRIMARY KEY,           -- stable small integer: FAISS and vector rows use it
    id TEXT NOT NULL UNIQUE,             -- content hash (blake2b-128, hex)
    width INTEGER, height INTEGER, format TEXT,
    shard INTEGER, shard_row INTEGER,    -- where the vector lives; NULL until embedded
    feature_norm REAL,                   -- norm before L2 normalisation (lets a linear head be re-applied)
    thumbnail BLOB,                      -- small WebP, served by id only
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,               -- relative to the indexed folder, '/'-separated
    image_id TEXT,                       -- NULL when the file could not be read
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL,                -- ok | error | missing
    error TEXT,
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_image ON files(image_id);
CREATE TABLE IF NOT EXISTS labels (
    image_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,                -- cluster | manual | accepted
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clusterings (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    backbone TEXT NOT NULL,
    params TEXT NOT NULL,                -- JSON
    seed INTEGER NOT NULL,
    n_images INTEGER NOT NULL,
    n_clusters INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_members (
    clustering_id INTEGER NOT NULL REFERENCES clusterings(id) ON DELETE CASCADE,
    image_id TEXT NOT NULL,
    cluster INTEGER NOT NULL,            -- after remainder placement; -1 = unsorted
    core_cluster INTEGER NOT NULL,       -- HDBSCAN's own label
    probability REAL NOT NULL,
    PRIMARY KEY (clustering_id, image_id)
);
CREATE INDEX IF NOT EXISTS members_cluster ON cluster_members(clustering_id, cluster);
CREATE TABLE IF NOT EXISTS cluster_suggestions (
    clustering_id INTEGER NOT NULL REFERENCES clusterings(id) ON DELETE CASCADE,
    cluster INTEGER NOT NULL,
    names TEXT NOT NULL,                 -- JSON list of [name, score]
    PRIMARY KEY (clustering_id, cluster)
);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    backbone TEXT NOT NULL,
    classes TEXT NOT NULL,               -- JSON list
    metrics TEXT NOT NULL,               -- JSON
    path TEXT NOT NULL,                  -- file stem under models/
    n_train INTEGER NOT NULL,
    current INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS predictions (
    image_id TEXT PRIMARY KEY,
    model_id INTEGER NOT NULL,
    label TEXT NOT NULL,                 -- 'unknown' below the model's threshold
    best TEXT NOT NULL,                  -- the top class even when below the threshold
    confidence REAL NOT NULL,
    margin REAL NOT NULL,                -- top-1 minus top-2 probability
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    kind TEXT NOT NULL,                  -- name | rename | move | drop | merge | split | label | review | regroup | model
    summary TEXT NOT NULL,               -- what a person reads in `organizer history` and the app
    undo TEXT NOT NULL,                  -- JSON list of ops restoring the state before (organizer/history.py)
    undone_at REAL                       -- NULL while in effect
);
CREATE TABLE IF NOT EXISTS shards (
    shard INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"""


class StoreError(Exception):
    """A problem with the store that the user can act on; the message says how."""


class DiskFullError(StoreError):
    """A write failed for lack of space; whatever was committed before is intact."""


DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_disk_full(exc: BaseException, where: os.PathLike | str | None = None) -> bool:
    """True for an OSError of a full disk or quota, and for SQLite's 'database or disk is full'.
    SQLite reports a full disk as an I/O error when the WAL index cannot grow, so an I/O
    error on a filesystem with (almost) no space left counts too."""
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL_ERRNOS
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
            return True
        if where is not None and (code is not None and code & 0xFF == sqlite3.SQLITE_IOERR or "disk I/O" in str(exc)):
            try:
                st = os.statvfs(where)
                return st.f_bavail * st.f_frsize < 1 << 20
            except OSError:
                return False
    return False


@contextlib.contextmanager
def disk_full_guard(store: "Store | Path", what: str):
    """Turn a full disk while writing `what` into one line that says what to do."""
    root = store.root if isinstance(store, Store) else Path(store)
    try:
        yield
    except (OSError, sqlite3.OperationalError) as e:
        if is_disk_full(e, root):
            raise DiskFullError(f"disk full while writing {what} in {root}: free some space and run the "
                                "command again; nothing already saved was lost") from None
        raise


def default_store_dir() -> Path:
    env = os.environ.get("ORGANIZER_STORE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "organizer" / "default"


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass
class FileRow:
    path: str
    image_id: str | None
    size: int
    mtime_ns: int
    status: str
    error: str | None


class Store:
    """One library: a SQLite database and its vector shards in `root`."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True):
        self.root = Path(root).expanduser().resolve()
        db_path = self.root / DB_NAME
        if not db_path.exists():
            if not create:
                raise StoreError(f"no store at {self.root}: run `organizer index FOLDER --store {self.root}` first")
            self.root.mkdir(parents=True, exist_ok=True)
        with disk_full_guard(self.root, "the database"):  # opening creates the WAL files
            self.db = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                      check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)  # IF NOT EXISTS: an older store gains the newer tables here
            version = self.get_meta("schema_version")
            if version is None or int(version) < SCHEMA_VERSION:
                self.set_meta("schema_version", str(SCHEMA_VERSION))
        self._action: dict | None = None  # the person's action being recorded (see `action`)

    # -- plumbing ---------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE so a writer takes the lock up front instead of failing mid-way."""
        with disk_full_guard(self, "the store"):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # SQLite may already have rolled back (a full disk does)
                    self.db.execute("ROLLBACK")
                raise

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (key, value))

    def bump_version(self) -> None:
        """A counter that changes whenever vectors change; caches compare against it."""
        self.set_meta("vectors_version", str(int(self.get_meta("vectors_version") or 0) + 1))

    @property
    def vectors_version(self) -> int:
        return int(self.get_meta("vectors_version") or 0)

    @property
    def backbone(self) -> str | None:
        return self.get_meta("backbone")

    @property
    def library_root(self) -> Path | None:
        value = self.get_meta("library_root")
        return Path(value) if value else None

    @property
    def vectors_dir(self) -> Path:
        return self.root / "vectors"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    # -- files and images --------------------------------------------------
    def files_by_path(self) -> dict[str, FileRow]:
        rows = self.db.execute("SELECT path, image_id, size, mtime_ns, status, error FROM files")
        return {r[0]: FileRow(*r) for r in rows}

    def embedded_image_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM images WHERE shard IS NOT NULL")}

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("ok", "error", "missing")}
        for status, n in self.db.execute("SELECT status, COUNT(*) FROM files GROUP BY status"):
            out[status] = n
        out["images"] = self.db.execute("SELECT COUNT(*) FROM images WHERE shard IS NOT NULL").fetchone()[0]
        out["labeled"] = self.db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        return out

    def path_to_image_id(self, path: str) -> str | None:
        row = self.db.execute("SELECT image_id FROM files WHERE path=? AND status='ok'", (path,)).fetchone()
        return row[0] if row else None

    def primary_paths(self, image_ids=None) -> dict[str, str]:
        """One path per image (the first by name among present files), for display and export."""
        rows = self.db.execute(
            "SELECT image_id, MIN(path) FROM files WHERE status='ok' AND image_id IS NOT NULL GROUP BY image_id")
        out = {r[0]: r[1] for r in rows}
        if image_ids is not None:
            return {i: out[i] for i in image_ids if i in out}
        return out

    def present_image_ids(self) -> list[str]:
        """Embedded images that at least one present file points to, in stable (rowid) order."""
        rows = self.db.execute(
            "SELECT i.id FROM images i WHERE i.shard IS NOT NULL AND EXISTS "
            "(SELECT 1 FROM files f WHERE f.image_id = i.id AND f.status='ok') ORDER BY i.rowid")
        return [r[0] for r in rows]

    def thumbnail(self, image_id: str) -> bytes | None:
        row = self.db.execute("SELECT thumbnail FROM images WHERE id=?", (image_id,)).fetchone()
        return row[0] if row else None

    # -- history: every change a person makes can be undone ------------------------------------
    @contextlib.contextmanager
    def action(self, kind: str, summary: str = ""):
        """Group the changes made inside into one history entry (one undo). Nested actions join
        the outer one. Yields a dict whose "summary" may be set once the outcome is known."""
        if self._action is not None:
            yield self._action
            return
        act = self._action = {"kind": kind, "summary": summary, "id": None}
        try:
            yield act
        finally:
            self._action = None
            if act["id"] is not None and act["summary"] != summary:
                self.db.execute("UPDATE history SET summary=? WHERE id=?", (act["summary"], act["id"]))

    def record(self, kind: str, summary: str, ops: list) -> None:
        """Add `ops` (how to restore what a change replaces) to history. Call it inside the
        transaction that makes the change, so the change and its undo commit together."""
        if not ops:
            return
        act = self._action
        if act is not None and act["id"] is not None:
            old = json.loads(self.db.execute("SELECT undo FROM history WHERE id=?", (act["id"],)).fetchone()[0])
            self.db.execute("UPDATE history SET undo=? WHERE id=?", (json.dumps(old + ops), act["id"]))
            return
        if act is not None:
            kind, summary = act["kind"], act["summary"] or summary
        cur = self.db.execute("INSERT INTO history(created_at, kind, summary, undo) VALUES(?,?,?,?)",
                              (time.time(), kind, summary, json.dumps(ops)))
        if act is not None:
            act["id"] = cur.lastrowid

    def _label_rows(self, image_ids: list[str]) -> list:
        """[id, name, source, created_at] as they are now ([id, None, None, None] when unnamed)."""
        now: dict = {}
        for start in range(0, len(image_ids), 900):
            part = image_ids[start:start + 900]
            now.update({r[0]: list(r) for r in self.db.execute(
                f"SELECT image_id, name, source, created_at FROM labels WHERE image_id IN ({','.join('?' * len(part))})",
                part)})
        return [now.get(i, [i, None, None, None]) for i in image_ids]

    # -- labels -------------------------------------------------------------
    def set_labels(self, image_ids, name: str, source: str, *, overwrite_manual: bool = True) -> int:
        now = time.time()
        image_ids = list(dict.fromkeys(image_ids))
        sql = ("INSERT INTO labels(image_id, name, source, created_at) VALUES(?,?,?,?) "
               "ON CONFLICT(image_id) DO UPDATE SET name=excluded.name, source=excluded.source, "
               "created_at=excluded.created_at")
        if not overwrite_manual:
            sql += " WHERE labels.source = 'cluster'"
        with self.transaction():
            before = [r for r in self._label_rows(image_ids)
                      if (r[1], r[2]) != (name, source) and (overwrite_manual or r[2] in (None, "cluster"))]
            cur = self.db.executemany(sql, [(i, name, source, now) for i in image_ids])
            self.record("label", f"named {len(before)} images “{name}”", [["labels", before]] if before else [])
        return cur.rowcount

    def remove_labels(self, image_ids) -> int:
        image_ids = list(dict.fromkeys(image_ids))
        with self.transaction():
            before = [r for r in self._label_rows(image_ids) if r[1] is not None]
            cur = self.db.executemany("DELETE FROM labels WHERE image_id=?", [(i,) for i in image_ids])
            self.record("label", f"removed the names of {len(before)} images", [["labels", before]] if before else [])
        return cur.rowcount

    def labels(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.execute("SELECT image_id, name FROM labels")}

    # -- clusterings ----------------------------------------------------------
    def current_clustering_id(self) -> int | None:
        row = self.db.execute("SELECT MAX(id) FROM clusterings").fetchone()
        return row[0]

    def cluster_assignments(self, clustering_id: int | None = None) -> dict[str, tuple[int, float]]:
        cid = clustering_id or self.current_clustering_id()
        if cid is None:
            return {}
        rows = self.db.execute("SELECT image_id, cluster, probability FROM cluster_members WHERE clustering_id=?",
                               (cid,))
        return {r[0]: (r[1], r[2]) for r in rows}

    def cluster_member_ids(self, cluster: int, clustering_id: int | None = None) -> list[str]:
        cid = clustering_id or self.current_clustering_id()
        if cid is None:
            return []
        rows = self.db.execute("SELECT image_id FROM cluster_members WHERE clustering_id=? AND cluster=? "
                               "ORDER BY probability DESC, image_id", (cid, cluster))
        return [r[0] for r in rows]

    # -- models and predictions ----------------------------------------------
    def current_model(self) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM models WHERE current=1 ORDER BY id DESC LIMIT 1").fetchone()

    def predictions(self) -> dict[str, sqlite3.Row]:
        return {r["image_id"]: r for r in self.db.execute("SELECT * FROM predictions")}


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def atomic_write(path, write) -> None:
    """Write a file through `write(f)` on a temp name, fsync, then rename: a reader (or a kill
    mid-write) sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
