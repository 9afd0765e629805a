"""Writing files so that a crash or a kill leaves the old file or the new one, never half of one."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def atomic_write(path, write) -> None:
    """Write a file through `write(f)` on a temp name, fsync, then rename: a reader (or a kill
    mid-write) sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    replace_file(tmp, path)


def replace_file(tmp, path) -> None:
    """Move a finished temp file over `path` durably: its data on disk first, then the rename, then
    the directory entry (so after a power cut the name points at the whole new file or the old one)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(Path(path).parent, os.O_RDONLY)
    except OSError:  # some filesystems cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
