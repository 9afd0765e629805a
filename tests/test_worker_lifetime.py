"""Workers never outlive the process that started them: after kill -9 of `organizer index` (which
runs no cleanup), its decode workers exit within seconds instead of running on for good."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import SAMPLE

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")


def _children(pid: int) -> set[int]:
    """Every process below pid (workers, and anything they started)."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parent_of[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, q in parent_of.items() if q in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; it only waits for its (dead) parent's reaper


def test_kill_9_of_index_leaves_no_worker(tmp_path):
    photos = tmp_path / "photos"
    for k in range(3):  # enough files that the workers are still busy when the kill comes
        shutil.copytree(SAMPLE, photos / f"copy{k}", ignore=shutil.ignore_patterns("*.md"))
        for f in (photos / f"copy{k}").rglob("*.jpg"):
            f.write_bytes(f.read_bytes() + bytes([k]))  # other content, so nothing is skipped as known
    proc = subprocess.Popen([sys.executable, "-m", "organizer", "index", str(photos), "--store",
                             str(tmp_path / "store"), "--workers", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.time() + 120
        workers: set[int] = set()
        while time.time() < deadline and len(workers) < 2:  # the pool has started its decoders
            workers = _children(proc.pid)
            if proc.poll() is not None:
                pytest.fail("indexing ended before its workers could be seen")
            time.sleep(0.2)
        assert len(workers) >= 2, workers
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.5)
    left = [p for p in workers if _alive(p)]
    for p in left:  # never leave them behind, whatever the verdict
        os.kill(p, signal.SIGKILL)
    assert not left, f"{len(left)} of {len(workers)} worker processes outlived a killed `organizer index`"
