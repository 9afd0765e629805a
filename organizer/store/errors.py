"""Errors the store raises; each message says what the user can do."""
from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from pathlib import Path


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
def disk_full_guard(store: "object", what: str):
    """Turn a full disk while writing `what` into one line that says what to do."""
    root = Path(store) if isinstance(store, (str, os.PathLike)) else store.root
    try:
        yield
    except (OSError, sqlite3.OperationalError) as e:
        if is_disk_full(e, root):
            raise DiskFullError(f"disk full while writing {what} in {root}: free some space and run the "
                                "command again; nothing already saved was lost") from None
        raise
