"""The store, the library's single source of truth: SQLite (WAL) plus vector shards; everything
else under a store (FAISS index, thumbnails' cache, ONNX exports, the map) is a cache.

    db.py       Store: the connection, transactions, the queries several stages share
    schema.py   the tables, SCHEMA_VERSION and migrations of older stores
    vectors.py  float16 vector shards, written once, checksummed
    history.py  the person's changes as undoable entries
    files.py    atomic_write / replace_file (fsync, then rename), content_hash
    errors.py   StoreError and the disk-full guard
"""
from organizer.store.db import FileRow, Store, default_store_dir, dumps
from organizer.store.errors import DiskFullError, StoreError, disk_full_guard, is_disk_full
from organizer.store.files import atomic_write, content_hash, replace_file
from organizer.store.schema import DB_NAME, SCHEMA_VERSION

__all__ = ["DB_NAME", "SCHEMA_VERSION", "DiskFullError", "FileRow", "Store", "StoreError", "atomic_write",
           "content_hash", "default_store_dir", "disk_full_guard", "dumps", "is_disk_full", "replace_file"]
