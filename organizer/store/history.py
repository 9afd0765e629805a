"""History of the changes a person makes, and undo.

Every change to names, groups or the current model (from the CLI, the app or Python) writes,
in the same transaction, a history row holding what it replaced: the labels rows, the cluster
rows, the suggestion rows, the clustering it added or the model it replaced. Undo writes
those back, newest entry first, so any entry can be undone after a restart and undoing N
entries returns the store to where it was before them. The store owns the table
(organizer/store.py); this module builds and applies the ops.

Ops (JSON lists):
    ["labels", [[image_id, name|None, source|None, created_at|None], ...]]   None: had no name
    ["members", clustering_id, [[image_id, cluster|None, core|None, probability|None], ...]]
    ["suggestions", clustering_id, [[cluster, names_json|None], ...]]
    ["clustering", clustering_id]                                             added: undo drops it
    ["model", previous_id]                                                    undo makes it current
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from organizer.store.db import Store
from organizer.store.errors import StoreError


@dataclass
class HistoryEntry:
    id: int
    created_at: float
    kind: str
    summary: str
    undone_at: float | None
    changes: int      # rows it changed (labels, cluster rows...), to say how big an undo is


# -- building ops (called inside the transaction that makes the change) ---------------------------
def members_before(store: Store, clustering_id: int, image_ids) -> list:
    image_ids = list(dict.fromkeys(image_ids))
    now: dict = {}
    for start in range(0, len(image_ids), 900):
        part = image_ids[start:start + 900]
        now.update({r[0]: list(r) for r in store.db.execute(
            "SELECT image_id, cluster, core_cluster, probability FROM cluster_members WHERE clustering_id=? "
            f"AND image_id IN ({','.join('?' * len(part))})", (clustering_id, *part))})
    return ["members", clustering_id, [now.get(i, [i, None, None, None]) for i in image_ids]]


def clusters_before(store: Store, clustering_id: int, clusters) -> list:
    """Members of whole clusters as they are now (before a merge or split moves them)."""
    clusters = list(clusters)
    ids = [r[0] for r in store.db.execute(
        f"SELECT image_id FROM cluster_members WHERE clustering_id=? AND cluster IN ({','.join('?' * len(clusters))})",
        (clustering_id, *clusters))]
    return members_before(store, clustering_id, ids)


def suggestions_before(store: Store, clustering_id: int, clusters) -> list:
    now = {r[0]: r[1] for r in store.db.execute(
        "SELECT cluster, names FROM cluster_suggestions WHERE clustering_id=?", (clustering_id,))}
    return ["suggestions", clustering_id, [[int(c), now.get(int(c))] for c in dict.fromkeys(clusters)]]


# -- reading ----------------------------------------------------------------------------------------
def _size(ops: list) -> int:
    return sum(len(op[-1]) if op[0] in ("labels", "members", "suggestions") else 1 for op in ops)


def entries(store: Store, limit: int | None = 20, *, include_undone: bool = False) -> list[HistoryEntry]:
    """Newest first."""
    sql = "SELECT id, created_at, kind, summary, undone_at, undo FROM history"
    if not include_undone:
        sql += " WHERE undone_at IS NULL"
    sql += " ORDER BY id DESC" + (" LIMIT ?" if limit else "")
    rows = store.db.execute(sql, (limit,) if limit else ())
    return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], _size(json.loads(r[5]))) for r in rows]


# -- undo -------------------------------------------------------------------------------------------
def undo(store: Store, n: int = 1, *, back_to: int | None = None) -> list[HistoryEntry]:
    """Undo the last `n` entries still in effect (or every one from entry `back_to` on), newest
    first, in one transaction. Returns what was undone, newest first."""
    if back_to is None and n < 1:
        raise StoreError("undo needs a positive number of actions")
    if back_to is not None:
        rows = store.db.execute("SELECT id, created_at, kind, summary, undo FROM history WHERE undone_at IS NULL "
                                "AND id >= ? ORDER BY id DESC", (back_to,)).fetchall()
        if not rows or rows[-1][0] != back_to:
            raise StoreError(f"no action {back_to} to undo (see `organizer history`)")
    else:
        rows = store.db.execute("SELECT id, created_at, kind, summary, undo FROM history WHERE undone_at IS NULL "
                                "ORDER BY id DESC LIMIT ?", (n,)).fetchall()
    if not rows:
        raise StoreError("nothing to undo: no change recorded since the store was made (or all undone)")
    done = []
    now = time.time()
    with store.transaction():
        for row in rows:
            ops = json.loads(row[4])
            for op in reversed(ops):
                _apply(store, op)
            store.db.execute("UPDATE history SET undone_at=? WHERE id=?", (now, row[0]))
            done.append(HistoryEntry(row[0], row[1], row[2], row[3], now, _size(ops)))
    return done


def _apply(store: Store, op: list) -> None:
    db = store.db
    kind = op[0]
    if kind == "labels":
        gone = [(r[0],) for r in op[1] if r[1] is None]
        back = [tuple(r) for r in op[1] if r[1] is not None]
        db.executemany("DELETE FROM labels WHERE image_id=?", gone)
        db.executemany("INSERT OR REPLACE INTO labels(image_id, name, source, created_at) VALUES(?,?,?,?)", back)
    elif kind == "members":
        cid = op[1]
        if not db.execute("SELECT 1 FROM clusterings WHERE id=?", (cid,)).fetchone():
            return  # that grouping is gone already
        db.executemany("DELETE FROM cluster_members WHERE clustering_id=? AND image_id=?",
                       [(cid, r[0]) for r in op[2] if r[1] is None])
        db.executemany("INSERT OR REPLACE INTO cluster_members(clustering_id, image_id, cluster, core_cluster, "
                       "probability) VALUES(?,?,?,?,?)", [(cid, *r) for r in op[2] if r[1] is not None])
        n = db.execute("SELECT COUNT(DISTINCT cluster) FROM cluster_members WHERE clustering_id=? AND cluster>=0",
                       (cid,)).fetchone()[0]
        db.execute("UPDATE clusterings SET n_clusters=? WHERE id=?", (n, cid))
    elif kind == "suggestions":
        cid = op[1]
        if not db.execute("SELECT 1 FROM clusterings WHERE id=?", (cid,)).fetchone():
            return
        db.executemany("DELETE FROM cluster_suggestions WHERE clustering_id=? AND cluster=?",
                       [(cid, c) for c, names in op[2] if names is None])
        db.executemany("INSERT OR REPLACE INTO cluster_suggestions(clustering_id, cluster, names) VALUES(?,?,?)",
                       [(cid, c, names) for c, names in op[2] if names is not None])
    elif kind == "clustering":
        db.execute("DELETE FROM clusterings WHERE id=?", (op[1],))  # members and suggestions cascade
    elif kind == "model":
        if op[1] is not None and db.execute("SELECT 1 FROM models WHERE id=?", (op[1],)).fetchone():
            db.execute("UPDATE models SET current = (id = ?)", (op[1],))
    else:
        raise StoreError(f"history entry with an unknown change {kind!r}: written by a newer organizer?")


def touches_model(entries_: list[HistoryEntry], store: Store) -> bool:
    ids = [e.id for e in entries_]
    if not ids:
        return False
    rows = store.db.execute(f"SELECT undo FROM history WHERE id IN ({','.join('?' * len(ids))})", ids)
    return any(op[0] == "model" for r in rows for op in json.loads(r[0]))
