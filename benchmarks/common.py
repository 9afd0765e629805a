"""Helpers shared by the benchmark scripts: paths, timed subprocesses, peak memory of a process
tree, a description of the machine, and result files under benchmarks/results/."""
from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATASETS = SHARED / "datasets"
RESULTS = ROOT / "benchmarks" / "results"
WORK = Path(os.environ.get("ORGANIZER_BENCH_DIR", "/tmp/organizer-bench"))  # generated data, never in ../shared
PY = sys.executable
USER_CACHE = WORK / "user-cache"  # the per-user ONNX cache the benchmarks see (never ~/.cache)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "ORGANIZER_USER_CACHE": str(USER_CACHE)}


def need(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"benchmark needs {path} (the shared datasets); not found")
    return path


def machine() -> dict:
    flags = set()
    model = platform.processor()
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", text).group(1)
        flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
    except (OSError, AttributeError):
        pass
    try:
        mem_gb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    except (OSError, AttributeError):
        mem_gb = None
    from importlib import metadata

    vers = {}
    for d in ("torch", "onnxruntime", "onnx", "faiss-cpu", "open_clip_torch", "Pillow", "numpy"):
        try:
            vers[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1) if mem_gb else None,
            "avx512": "avx512f" in flags, "amx_bf16": "amx_bf16" in flags, "python": platform.python_version(),
            "versions": vers, "loadavg_start": os.getloadavg()}


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {**result, "loadavg_end": os.getloadavg(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return path


def median(xs):
    return statistics.median(xs) if xs else None


class TreeRss:
    """Samples the resident memory of a process and its children (summed) every `interval`
    seconds from /proc; `peak` and `peak_main` are in MiB."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.peak = self.peak_main = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _rss(pid: int) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _children(self, pid: int) -> list[int]:
        out = []
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                kids = (task / "children").read_text().split()
                for k in kids:
                    out.append(int(k))
                    out.extend(self._children(int(k)))
        except OSError:
            pass
        return out

    def _run(self):
        while not self._stop.is_set():
            main = self._rss(self.pid)
            total = main + sum(self._rss(p) for p in self._children(self.pid))
            self.peak_main = max(self.peak_main, main)
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()


def run(cmd: list, *, env: dict | None = None, rss: bool = False, timeout: float = 7200, cwd: Path | None = None) -> dict:
    """Run a command, return wall seconds, output and (optionally) peak RSS of its process tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or ENV, cwd=cwd or ROOT)
    sampler = TreeRss(proc.pid) if rss else None
    out, err = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if sampler:
        sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
    # CPU seconds of the command and every process it waited for (decode workers included)
    result = {"wall_s": wall, "cpu_s": cpu, "stdout": out, "stderr": err, "loadavg": os.getloadavg()[0]}
    if sampler:
        result.update(peak_rss_mib=sampler.peak, peak_rss_main_mib=sampler.peak_main)
    return result


def organizer(*args) -> list:
    return [PY, "-m", "organizer.cli", *map(str, args)]


def parse_index(out: str) -> dict:
    """Numbers from `organizer index`'s summary line."""
    m = re.search(r"(\d+) files: (\d+) embedded, (\d+) reused, (\d+) unchanged, (\d+) failed, (\d+) missing "
                  r"\(([\d.]+)s, backbone (.*?)(?: on (\S+))?\)", out)
    if not m:
        raise RuntimeError(f"cannot parse index output: {out[-500:]}")
    keys = ("files", "embedded", "reused", "unchanged", "failed", "missing")
    res = {k: int(v) for k, v in zip(keys, m.groups()[:6])}
    res.update(seconds=float(m.group(7)), backbone=m.group(8), runtime=m.group(9))
    return res


def fresh_store(path: Path, onnx_from: Path | None = None) -> Path:
    """An empty store directory; with `onnx_from`, the ONNX cache of another store is copied in
    (what the per-user cache gives every store after the first one on a machine)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    if onnx_from is not None and (onnx_from / "cache" / "onnx").exists():
        shutil.copytree(onnx_from / "cache" / "onnx", path / "cache" / "onnx")
    return path


def subset(src: Path, dest: Path, limit: int | None, stride: int = 1) -> Path:
    """Copy (hard-link where possible) every `stride`-th image of src, up to `limit`, keeping folders."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))[::stride]
    if limit:
        files = files[:limit]
    marker = dest / ".complete"
    if marker.exists() and marker.read_text() == str(len(files)):
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    for f in files:
        target = dest / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)
    marker.write_text(str(len(files)))
    return dest
