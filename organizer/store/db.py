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
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from organizer.store.errors import StoreError, disk_full_guard
from organizer.store.schema import DB_NAME, migrate

BUSY_TIMEOUT_MS = 30_000


def default_store_dir() -> Path:
    env = os.environ.get("ORGANIZER_STORE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "organizer" / "default"


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
            migrate(self.db, self.root)
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

    def cache_dir(self, name: str = "app") -> Path:
        """A folder of disposable files under the store (the app's map, say): deleting it loses nothing."""
        path = self.root / name
        path.mkdir(exist_ok=True)
        return path

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

    def cluster_tree(self, clustering_id: int | None = None) -> dict[int, tuple[int, str, float | None]]:
        """node -> (parent, level, agreement) of a clustering's group tree (empty for older stores)."""
        cid = clustering_id or self.current_clustering_id()
        return {r[0]: (r[1], r[2], r[3]) for r in self.db.execute(
            "SELECT node, parent, level, agreement FROM cluster_nodes WHERE clustering_id=?", (cid,))}

    def node_member_ids(self, node: int, clustering_id: int | None = None) -> list[str]:
        """Images whose finest tree node is ``node`` or lies below it."""
        cid = clustering_id or self.current_clustering_id()
        tree = self.cluster_tree(cid)
        if node not in tree:
            return []
        below, todo = {node}, [node]
        kids: dict[int, list[int]] = {}
        for v, (parent, _, _) in tree.items():
            kids.setdefault(parent, []).append(v)
        while todo:
            for c in kids.get(todo.pop(), []):
                below.add(c)
                todo.append(c)
        marks = ",".join("?" * len(below))
        rows = self.db.execute(f"SELECT image_id FROM cluster_members WHERE clustering_id=? AND node IN ({marks}) "
                               "ORDER BY probability DESC, image_id", (cid, *sorted(below)))
        return [r[0] for r in rows]

    # -- models and predictions ----------------------------------------------
    def current_model(self) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM models WHERE current=1 ORDER BY id DESC LIMIT 1").fetchone()

    def predictions(self) -> dict[str, sqlite3.Row]:
        return {r["image_id"]: r for r in self.db.execute("SELECT * FROM predictions")}


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
