"""Helpers for the reliability tests: stores that skip the ONNX export, summaries, checks."""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from support import ROOT, run_cli

SUMMARY = re.compile(r"(\d+) files: (\d+) embedded, (\d+) reused, (\d+) unchanged, (\d+) failed, (\d+) missing")


def summary(stdout: str) -> dict[str, int]:
    m = SUMMARY.search(stdout)
    assert m, stdout
    return dict(zip(("files", "embedded", "reused", "unchanged", "failed", "missing"), map(int, m.groups())))


def new_store(sample_store: Path, dest: Path) -> Path:
    """An empty store holding the session store's ONNX export: tests pay for indexing, not exporting."""
    dest.mkdir(parents=True)
    if (sample_store / "cache").exists():
        shutil.copytree(sample_store / "cache", dest / "cache")
    return dest


def cli_env(**extra) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", **extra}


def run_measured(*args, env=None, timeout=300) -> tuple[subprocess.CompletedProcess, int]:
    """Run `organizer ARGS` under a small parent that reports the peak RSS (KiB) of the command
    and every process it started (ru_maxrss of RUSAGE_CHILDREN: the largest one)."""
    wrapper = ("import resource, subprocess, sys\n"
               "rc = subprocess.call([sys.executable, '-m', 'organizer.cli', *sys.argv[1:]])\n"
               "sys.stderr.write('\\nPEAK_RSS_KB=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", wrapper, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or cli_env(), cwd=ROOT)
    peak = int(re.search(r"PEAK_RSS_KB=(\d+)", proc.stderr).group(1))
    proc.stderr = proc.stderr.split("\nPEAK_RSS_KB=")[0]
    return proc, peak


def check_consistent(store: Path) -> dict:
    """Assert the store is intact and free of duplicates; return what it holds."""
    db = sqlite3.connect(store / "organizer.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) - COUNT(DISTINCT path) FROM files").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) - COUNT(DISTINCT id) FROM images").fetchone()[0] == 0
        # every vector row points inside a recorded shard whose file has exactly the recorded size
        shards = {s: (rows, dim) for s, rows, dim in db.execute("SELECT shard, rows, dim FROM shards")}
        for shard, (rows, dim) in shards.items():
            assert (store / "vectors" / f"{shard:06d}.f16").stat().st_size == rows * dim * 2
        for shard, row in db.execute("SELECT shard, shard_row FROM images WHERE shard IS NOT NULL"):
            assert shard in shards and 0 <= row < shards[shard][0], (shard, row)
        # no two images share a vector row
        assert db.execute("SELECT COUNT(*) FROM (SELECT shard, shard_row FROM images WHERE shard IS NOT NULL "
                          "GROUP BY shard, shard_row HAVING COUNT(*) > 1)").fetchone()[0] == 0
        # files only point at images that exist
        assert db.execute("SELECT COUNT(*) FROM files WHERE image_id IS NOT NULL AND status='ok' AND image_id NOT IN "
                          "(SELECT id FROM images)").fetchone()[0] == 0
        return {"files": dict(db.execute("SELECT path, image_id FROM files WHERE status='ok'")),
                "errors": dict(db.execute("SELECT path, error FROM files WHERE status='error'")),
                "images": {r[0] for r in db.execute("SELECT id FROM images WHERE shard IS NOT NULL")}}
    finally:
        db.close()




def copy_photos(dest: Path, per_class: int, classes: int = 8) -> list[str]:
    from support import SAMPLE

    out = []
    for cls in sorted(p for p in SAMPLE.iterdir() if p.is_dir())[:classes]:
        (dest / cls.name).mkdir(parents=True, exist_ok=True)
        for src in sorted(cls.glob("*.jpg"))[:per_class]:
            shutil.copy2(src, dest / cls.name / src.name)
            out.append(f"{cls.name}/{src.name}")
    return out


def run_org(*args, check=True, timeout=600, env=None) -> subprocess.CompletedProcess:
    """support.run_cli with these tests' environment (cli_env) by default."""
    return run_cli(*args, check=check, timeout=timeout, env=env or cli_env())
