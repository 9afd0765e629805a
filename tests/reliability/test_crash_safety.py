"""10. Crash safety: `kill -9` at random points never damages the store. After every kill the
SQLite integrity check passes, no row is duplicated or half-written, and a resumed run ends with
exactly the state of an uninterrupted run; a kill during the first ONNX export is harmless too.
A kill while a model or the search index is saved leaves a file that loads (the previous one,
or one rebuilt from the store), never a half file taken for a model."""
from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support import ROOT, run_cli, stored_vectors

from .helpers import check_consistent, cli_env, copy_photos

SEED = 20240505
KILLS = 20                 # required kills of `organizer index` (the issue asks for at least 20)
MAX_ATTEMPTS = 60          # runs that may end before their kill (fast machine, finished store)


# -- processes -----------------------------------------------------------------------------
def spawn(args: list, env: dict, log: Path) -> subprocess.Popen:
    """A command in its own process group, so its decode workers can be reaped after a kill."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, start_new_session=True)


def kill9(proc: subprocess.Popen) -> int:
    """`kill -9 PID` (what a crash or the OOM killer does), then reap what it had started.
    Returns the exit status: -9 when the kill landed, else how the process had ended."""
    proc.send_signal(signal.SIGKILL)  # no-op when it has already exited
    rc = proc.wait(timeout=120)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # orphaned decode workers would only eat the 2 cores
    except ProcessLookupError:
        pass
    return rc


def wait_until(cond, proc: subprocess.Popen, timeout: float) -> bool:
    """Poll `cond` until it holds (True), or the process ended or the time is up (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def listing(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


# -- the indexer ---------------------------------------------------------------------------
def index_args(folder: Path, store: Path) -> list:
    # one decode process: commits come at a pace that random kills can land between and inside
    return ["-c", "from organizer.cli import main; main()", "index", folder, "--store", store,
            "--backbone", "efficientnet-lite0", "--workers", "1"]


def library(folder: Path) -> int:
    """56 photos, 3 byte-identical copies under other names (reused, not embedded) and 2 broken
    files (recorded as errors): every kind of row the indexer writes."""
    copy_photos(folder, per_class=7, classes=8)
    (folder / "copies").mkdir()
    for rel in ("airplanes/image_0001.jpg", "watch/image_0002.jpg", "ketch/image_0003.jpg"):
        shutil.copy2(folder / rel, folder / "copies" / rel.replace("/", "-"))
    (folder / "copies" / "empty.jpg").write_bytes(b"")
    (folder / "copies" / "notes.png").write_text("not an image\n")
    return sum(1 for p in folder.rglob("*") if p.is_file())


def check_after_kill(store: Path) -> dict:
    """check_consistent, plus: nothing half-committed and ONNX not marked as failed."""
    if not (store / "organizer.db").exists():  # killed before the store was created
        return {"files": {}, "errors": {}, "images": set()}
    state = check_consistent(store)
    db = sqlite3.connect(store / "organizer.db")
    try:
        # a shard is recorded in the same transaction as the images that use it
        assert db.execute("SELECT COUNT(*) FROM shards WHERE shard NOT IN "
                          "(SELECT shard FROM images WHERE shard IS NOT NULL)").fetchone()[0] == 0
        # a file is recorded only with its image's vector
        assert db.execute("SELECT COUNT(*) FROM files f JOIN images i ON i.id = f.image_id "
                          "WHERE f.status = 'ok' AND i.shard IS NULL").fetchone()[0] == 0
    finally:
        db.close()
    # a kill is not a failed export: a `.failed` marker would turn ONNX off for this store for good
    assert not list((store / "cache" / "onnx").glob("*.failed"))
    return state


def counts(store: Path) -> dict:
    from organizer.store import Store

    with Store(store, create=False) as s:
        return s.counts()


@pytest.mark.slow
def test_kill_9_index_at_random_points_then_resume(tmp_path):
    rng = random.Random(SEED)
    folder = tmp_path / "photos"
    n_files = library(folder)
    store, reference = tmp_path / "killed", tmp_path / "reference"
    onnx = store / "cache" / "onnx"
    log = tmp_path / "index.log"
    # ORGANIZER_FLUSH_EVERY=2: a commit (shard file + one transaction) every two new images, so
    # kills land inside shard writes and commits. A private user cache, so the first runs export.
    env = cli_env(ORGANIZER_FLUSH_EVERY="2", ORGANIZER_USER_CACHE=str(tmp_path / "user-cache"),
                  ORGANIZER_STREAMS="1", ORGANIZER_THREADS="1")
    kills: list[str] = []

    def exported() -> bool:  # a published export: its sidecar has its final name
        return any(n.endswith(".json") and not n.endswith(".tmp") for n in listing(onnx))

    # 1. Before the export is cached: kill while it is written and verified, then while it is
    #    published. Either way the next run must export again (or use it) and go on.
    # (On a quiet machine the export takes about a second and the 56 images little more: both
    # kills must come soon, or the store is already complete and no later kill lands mid-work.)
    for anchor, spread in (("export", 0.05), ("exported", 0.05)):
        proc = spawn(index_args(folder, store), env, log)
        cond = ((lambda: any(n.endswith(".tmp") for n in listing(onnx))) if anchor == "export" else exported)
        assert wait_until(cond, proc, 600), f"no ONNX {anchor} seen:\n{log.read_text()[-3000:]}"
        time.sleep(rng.uniform(0, spread))
        during_export = not exported()
        assert kill9(proc) == -signal.SIGKILL, log.read_text()[-3000:]
        if anchor == "export":
            assert during_export, "the first kill was meant to land inside the export"
        kills.append(anchor)
        check_after_kill(store)
    export_leftovers = {n for n in listing(onnx) if n.endswith(".tmp")}

    # 2. The uninterrupted run, on a fresh store holding the same (verified) export.
    (reference / "cache" / "onnx").mkdir(parents=True)
    for p in onnx.iterdir():
        if p.suffix in (".onnx", ".json"):
            shutil.copy2(p, reference / "cache" / "onnx" / p.name)
    started = time.monotonic()
    proc = spawn(index_args(folder, reference), env, log)
    assert wait_until(lambda: bool(listing(reference / "vectors")), proc, 600), log.read_text()[-3000:]
    first_commit = time.monotonic() - started  # startup: imports, scan, loading the network
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    expected = check_after_kill(reference)
    assert len(expected["files"]) + len(expected["errors"]) == n_files and len(expected["errors"]) == 2

    # 3. Random kills on the same store, resuming each time. Some land at a random time after
    #    start (imports, scan, marking missing files, loading the network), the others a random
    #    moment after the run's k-th shard write began (k random: counted in commits, not
    #    seconds, so a faster or slower machine kills at the same points of the work).
    attempts = mid_work = torn_shard = 0
    finished_in = None  # how long a run that was not killed took: the store is complete from then on
    while len(kills) < KILLS and attempts < MAX_ATTEMPTS:
        attempts += 1
        before = listing(store / "vectors")
        started = time.monotonic()
        proc = spawn(index_args(folder, store), env, log)
        anchored = False
        if finished_in is None and rng.random() >= 0.3:
            anchor, k = "work", rng.randint(1, 3)
            anchored = wait_until(lambda: len({n.split(".")[0] for n in listing(store / "vectors") - before}) >= k,
                                  proc, 600)
            if anchored:  # inside that shard write or its commit, or just after
                time.sleep(rng.uniform(0, 0.02))
        else:
            anchor = "start"
            wait_until(lambda: False, proc, rng.uniform(0, 0.9 * finished_in if finished_in else 1.2 * first_commit))
        rc = kill9(proc)
        if rc != -signal.SIGKILL:  # it finished first: fine, if it succeeded
            assert rc == 0, log.read_text()[-3000:]
            finished_in = time.monotonic() - started
            continue
        kills.append(anchor)
        left = listing(store / "vectors")
        state = check_after_kill(store)
        recorded = {f"{int(s):06d}.f16" for s in _shards(store)}
        if any(n.endswith(".tmp") for n in left) or any(n.endswith(".f16") and n not in recorded for n in left):
            torn_shard += 1  # killed inside a shard write or between the shard and its commit
        if anchored and len(state["files"]) < n_files - 2:
            mid_work += 1  # killed while this run was embedding and committing
    print(f"kills: {len(kills)} in {attempts} resumed runs ({kills.count('start')} after start, "
          f"{kills.count('work')} after a commit began, {mid_work} of them with images still to do, {torn_shard} "
          f"inside a shard write or before its commit); export leftovers: {sorted(export_leftovers)}")
    assert len(kills) >= KILLS
    assert mid_work >= 5, "too few kills landed while images were being committed"

    # 4. A resumed run finishes and ends exactly where the uninterrupted run did. Leftovers of
    #    the killed export are removed once their process is gone and they are old enough.
    for name in listing(onnx):
        if name.endswith(".tmp"):
            os.utime(onnx / name, (time.time() - 3600,) * 2)
    proc = subprocess.run([sys.executable, *map(str, index_args(folder, store))], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = check_after_kill(store)
    assert not [n for n in listing(onnx) if n.endswith(".tmp")], listing(onnx)
    assert not [n for n in listing(store / "vectors") if not n.endswith(".f16")]
    assert {f"{s:06d}.f16" for s in _shards(store)} == listing(store / "vectors")
    assert got["images"] == expected["images"]          # same set of ids
    assert got["files"] == expected["files"]            # same file -> id map
    assert got["errors"] == expected["errors"]
    assert counts(store) == counts(reference)           # same status counts
    a, b = stored_vectors(store), stored_vectors(reference)
    assert a.keys() == b.keys() == expected["images"]
    ids = sorted(a)
    assert np.abs(np.stack([a[i] for i in ids]) - np.stack([b[i] for i in ids])).max() < 2e-3  # float16


def _shards(store: Path) -> list[int]:
    db = sqlite3.connect(store / "organizer.db")
    try:
        return [r[0] for r in db.execute("SELECT shard FROM shards")]
    finally:
        db.close()


# -- kills during a save (fast) ---------------------------------------------------------------
SAVE_MODELS = """
import json, sys
from organizer.learn.model import load_model, save_model
from organizer.store import Store
store = Store(sys.argv[1], create=False)
model = load_model(store)
metrics = json.loads(store.current_model()["metrics"])
print("saving", flush=True)
while True:  # each save: arrays and JSON under temporary names, fsync, rename, then the row
    save_model(store, model, metrics, current=True)
"""

SAVE_INDEX = """
import sys
from organizer import search
from organizer.store import Store
store = Store(sys.argv[1], create=False)
print("saving", flush=True)
i = 0
while True:  # alternate kinds, so a torn save (new index, old sidecar) differs from the previous one
    search.forget(store)
    search.save_index(store, search.build_index(store, kind="ivf" if i % 2 else "flat"))
    i += 1
"""


def start_saver(script: str, store: Path, log: Path) -> subprocess.Popen:
    proc = spawn(["-c", script, store], {**cli_env(), "OMP_NUM_THREADS": "1"}, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and "saving" not in log.read_text():
        time.sleep(0.01)
    assert proc.poll() is None, log.read_text()
    return proc


def label_three_classes(store: Path) -> None:
    from organizer.store import Store
    from support import truth

    with Store(store, create=False) as s:
        by_class: dict[str, list[str]] = {}
        for path, image_id in s.db.execute("SELECT path, image_id FROM files WHERE status='ok' ORDER BY path"):
            by_class.setdefault(truth(path), []).append(image_id)
        for name in ("airplanes", "sunflower", "watch"):
            s.set_labels(by_class[name][:5], name, "manual")


def test_kill_9_during_model_save(store_copy, tmp_path):
    from organizer.learn.model import load_model, save_model
    from organizer.learn.classify import train
    from organizer.store import Store

    label_three_classes(store_copy)
    with Store(store_copy, create=False) as s:
        train(s, force=True)
        first = load_model(s)
    rng = random.Random(SEED)
    models = store_copy / "models"
    interrupted = 0
    for attempt in range(5):
        log = tmp_path / f"save-{attempt}.log"
        proc = start_saver(SAVE_MODELS, store_copy, log)
        time.sleep(rng.uniform(0, 0.05))
        assert kill9(proc) == -signal.SIGKILL, log.read_text()
        with Store(store_copy, create=False) as s:
            assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            current = load_model(s)  # the current model loads and is the model that was saved
            assert current.classes == first.classes and np.array_equal(current.coef, first.coef)
            rows = [r[0] for r in s.db.execute("SELECT path FROM models")]
            for model_id, in s.db.execute("SELECT id FROM models"):
                load_model(s, model_id)  # every recorded model is whole: no half file was recorded
        stems = {p.name.split(".")[0] for p in models.iterdir()}
        leftovers = [p.name for p in models.iterdir() if p.name.endswith(".tmp")]
        if leftovers or stems - set(rows):
            interrupted += 1  # killed inside a save: temporary files, or files whose row never committed
    assert interrupted >= 1, "no kill landed inside a save"

    # The next save takes the number a killed save had written files for, and is what loads.
    with Store(store_copy, create=False) as s:
        coef = first.coef * 2
        model_id = save_model(s, type(first)(first.classes, coef, first.intercept, first.backbone, first.threshold),
                              {"n_train": 15}, current=True)
        assert np.array_equal(load_model(s).coef, coef) and s.current_model()["id"] == model_id
    out = run_cli("predict", "--store", store_copy)
    assert out.returncode == 0 and "Traceback" not in out.stderr


def test_kill_9_during_search_index_save(store_copy, tmp_path):
    from organizer import search
    from organizer.store import Store
    from organizer.store.vectors import count_present, load_vectors

    with Store(store_copy, create=False) as s:
        search.save_index(s, search.build_index(s))  # a previous index is in place
        ids, X = load_vectors(s)
        n = count_present(s)
    rng = random.Random(SEED)
    tmp = store_copy / (search.INDEX_NAME + ".tmp")
    outcomes = {"kept": 0, "rebuilt": 0, "inside a save": 0}
    for attempt in range(6):
        log = tmp_path / f"index-{attempt}.log"
        proc = start_saver(SAVE_INDEX, store_copy, log)
        if attempt % 2:  # aim at the save itself: a moment after its temporary file appears
            wait_until(tmp.exists, proc, 30)
            time.sleep(rng.uniform(0, 0.005))
        else:
            time.sleep(rng.uniform(0, 0.2))
        assert kill9(proc) == -signal.SIGKILL, log.read_text()
        outcomes["inside a save"] += any(p.name.endswith(".tmp") for p in store_copy.iterdir())
        search.forget()
        with Store(store_copy, create=False) as s:
            cached = search.load_index(s, rebuild=False)  # the cache as the kill left it: whole, or refused
            outcomes["kept" if cached is not None else "rebuilt"] += 1
            index = search.load_index(s)
            assert index.ntotal == n
            hits = search.query(s, X[:3], k=3)
            assert [h[0][0] for h in hits] == ids[:3]  # each stored image finds itself first
            search.forget()
    print(f"search index after kills: {outcomes}")
    out = run_cli("similar", "watch/image_0001.jpg", "--store", store_copy, "-k", "3")
    assert len(out.stdout.strip().splitlines()) == 3 and "Traceback" not in out.stderr
