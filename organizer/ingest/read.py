"""The read step of indexing, run in worker processes (local pool or Ray actors): hash, decode
safely, crop and thumbnail each file. Embedding and writing happen elsewhere (indexer.py)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from organizer.store import content_hash

NICE_WORKERS = 5  # decode processes run below the embedding process: inference is what all wait on
_KNOWN: set[str] = set()


def die_with_parent(parent: int) -> None:
    """Make this worker exit when the process that started it dies, even by kill -9 (which runs
    no cleanup, so the pool never tells its workers to stop): Linux's parent-death signal, and
    for other systems (or a parent gone before it was set) a thread that checks every second."""
    import signal
    import threading

    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def init_worker(known: set[str], parent: int) -> None:
    import signal

    global _KNOWN
    _KNOWN = known
    # A forked worker inherits the indexer's signal handlers (watch's Stopper, say): back to
    # what a spawned worker starts with.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent)
    try:  # decoding yields to inference: the embedding step is what everything waits on
        os.nice(NICE_WORKERS)
    except OSError:
        pass


def read_files(root: str, rels: list[str], preprocess, thumb_size: int, max_pixels: int | None,
               known=None) -> list[dict]:
    """Hash, decode, crop and thumbnail files. Pixels travel back as uint8 crops
    (`Preprocess.crop`): a quarter of the bytes of float32, normalised later per batch.
    known: content hashes already embedded (anything with `in`; default: the worker's set)."""
    from organizer.ingest.decode import DecodeError, decode_image, make_thumbnail

    known = _KNOWN if known is None else known
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
        if item["hash"] in known:
            out.append(item)
            continue
        try:
            decoded = decode_image(data, name=rel, min_side=max(preprocess.size, thumb_size), max_pixels=max_pixels)
            item["pixels"] = preprocess.crop(decoded.image)
            item["thumb"] = make_thumbnail(decoded.image, thumb_size)
            item.update(width=decoded.width, height=decoded.height, format=decoded.format)
        except DecodeError as e:
            item["error"] = str(e)
        except Exception as e:  # a decoder bug must not stop the batch either
            item["error"] = f"{rel}: {type(e).__name__}: {e}"
        out.append(item)
    return out
