"""The store's schema, in one place: the tables, their version, and how an older store is brought up to it.

Every table is created with IF NOT EXISTS, so an older store gains the newer tables when it is opened;
columns added later are added by `migrate`. A store made by a newer organizer is refused, never altered."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from organizer.store.errors import StoreError

SCHEMA_VERSION = 3  # 2: the history table; 3: the group tree (older stores gain both when opened)
DB_NAME = "organizer.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    rowid INTEGER PRIMARY KEY,           -- stable small integer: FAISS and vector rows use it
    id TEXT NOT NULL UNIQUE,             -- content hash (blake2b-128, hex)
    width INTEGER, height INTEGER, format TEXT,
    shard INTEGER, shard_row INTEGER,    -- where the vector lives; NULL until embedded
    feature_norm REAL,                   -- norm before L2 normalisation (lets a linear head be re-applied)
    thumbnail BLOB,                      -- small JPEG (WebP before issue 17), served by id only
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
    node INTEGER,                        -- finest group-tree node holding it (cluster_nodes); NULL: none
    PRIMARY KEY (clustering_id, image_id)
);
CREATE INDEX IF NOT EXISTS members_cluster ON cluster_members(clustering_id, cluster);
CREATE TABLE IF NOT EXISTS cluster_nodes (  -- the group tree: flat clusters, their parents, their parts
    clustering_id INTEGER NOT NULL REFERENCES clusterings(id) ON DELETE CASCADE,
    node INTEGER NOT NULL,               -- ids 0..k-1 are the flat clusters of cluster_members.cluster
    parent INTEGER NOT NULL,             -- -1 at the top
    level TEXT NOT NULL,                 -- group | parent | sub-group
    agreement REAL,                      -- flat clusters: share of members' neighbours inside it
    PRIMARY KEY (clustering_id, node)
);
CREATE TABLE IF NOT EXISTS cluster_merges (  -- pairs of flat clusters that look like one thing
    clustering_id INTEGER NOT NULL REFERENCES clusterings(id) ON DELETE CASCADE,
    a INTEGER NOT NULL, b INTEGER NOT NULL, kappa REAL NOT NULL,
    PRIMARY KEY (clustering_id, a, b)
);
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
-- tags (learn/tags.py)
CREATE TABLE IF NOT EXISTS tags (
    image_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (image_id, tag)
);
CREATE INDEX IF NOT EXISTS tags_tag ON tags(tag);
CREATE TABLE IF NOT EXISTS tag_models (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    backbone TEXT NOT NULL,
    tags TEXT NOT NULL,                  -- JSON list, the model's row order
    metrics TEXT NOT NULL,               -- JSON: per tag and skipped tags
    path TEXT NOT NULL,                  -- file stem under models/
    n_train INTEGER NOT NULL,
    current INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tag_predictions (
    image_id TEXT NOT NULL,
    tag TEXT NOT NULL,                   -- only tags scoring at or above their threshold
    score REAL NOT NULL,
    model_id INTEGER NOT NULL,
    PRIMARY KEY (image_id, tag)
);
-- duplicates (discover/duplicates.py)
CREATE TABLE IF NOT EXISTS duplicate_hashes (
    image_id TEXT PRIMARY KEY,
    algo TEXT NOT NULL,
    phash BLOB NOT NULL               -- 8 bytes per crop in HASH_CROPS
);
CREATE TABLE IF NOT EXISTS duplicate_moves (
    path TEXT NOT NULL,               -- where the file was, relative to the indexed folder
    image_id TEXT,
    dest TEXT NOT NULL,               -- absolute path it was moved to
    moved_at REAL NOT NULL
);
-- duplicates_verify (discover/duplicates_verify.py)
CREATE TABLE IF NOT EXISTS duplicate_checks (
    a TEXT NOT NULL, b TEXT NOT NULL,  -- image ids, a < b
    algo TEXT NOT NULL,
    match REAL NOT NULL, colour REAL NOT NULL,
    PRIMARY KEY (a, b, algo)
);
"""


def migrate(db: sqlite3.Connection, root: Path) -> None:
    """Bring the schema of an open database up to SCHEMA_VERSION (idempotent, cheap when current)."""
    has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() if has_meta else None
    version = int(row[0]) if row else None
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(f"the store {root} was made by a newer organizer (schema {version}, this one reads up to "
                         f"{SCHEMA_VERSION}): upgrade organizer (pip install -U organizer); nothing was changed")
    db.executescript(SCHEMA)
    columns = {r[1] for r in db.execute("PRAGMA table_info(cluster_members)")}
    if "node" not in columns:  # version 3: stores made before the group tree
        db.execute("ALTER TABLE cluster_members ADD COLUMN node INTEGER")
    if version is None or version < SCHEMA_VERSION:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),))
