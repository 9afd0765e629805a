"""`organizer watch FOLDER`: index new files as they arrive, predict them, write their sidecars.

Polling, not inotify: it needs no extra package, works on network shares and external disks
(where change notifications often never arrive), and each round is the incremental index,
which only stats files it has seen. A round starts when the previous one has ended, so a slow
round never piles up behind another. Ctrl+C (SIGINT) or SIGTERM stops after the current step;
everything written by then is kept, as with `organizer index`."""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from organizer.store import StoreError


@dataclass
class WatchRound:
    round: int
    new_files: int                # files new or changed in this round
    predicted: list[tuple[str, str, float]] = field(default_factory=list)   # (path, label, confidence)
    sidecars: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""


class Stopper:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so a round is never cut in half."""

    def __init__(self):
        self.event = threading.Event()
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.event.is_set():  # a second Ctrl+C: the person means it now
            raise KeyboardInterrupt
        self.event.set()

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def ok_files(store) -> dict[str, str]:
    return dict(store.db.execute("SELECT path, image_id FROM files WHERE status='ok' AND image_id IS NOT NULL"))


def predict_paths(lib, files: dict[str, str]) -> list[tuple[str, str, float]]:
    """Predict (and store) the images of these {path: image id}; nothing when there is no model."""
    from organizer.learn.model import TrainError, load_model
    from organizer.store.vectors import load_vectors

    try:
        model = load_model(lib.store)
    except TrainError:
        return []
    model_id = lib.store.current_model()["id"]
    ids, X = load_vectors(lib.store, sorted(set(files.values())))
    results = dict(zip(ids, model.predict(X)))
    now = time.time()
    with lib.store.transaction():
        lib.store.db.executemany(
            "INSERT OR REPLACE INTO predictions(image_id, model_id, label, best, confidence, margin, created_at) "
            "VALUES(?,?,?,?,?,?,?)", [(i, model_id, lab, best, conf, margin, now)
                                      for i, (lab, best, conf, margin) in results.items()])
    return [(p, results[i][0], round(results[i][2], 4)) for p, i in sorted(files.items())]


def watch(lib, folder, *, interval: float = 5.0, sidecars: dict | None = None, rounds: int | None = None,
          on_round: Callable[[WatchRound], None] | None = None, stop: threading.Event | None = None,
          index_options: dict | None = None) -> int:
    """Poll `folder` until stopped (or for `rounds` rounds); returns the number of rounds run.

    sidecars: keyword arguments for Library.export_xmp (out= or beside_originals=...), applied
    to the images of each round."""
    if interval <= 0:
        raise StoreError("--interval must be a positive number of seconds")
    stopper = Stopper()
    with stopper:
        def stopped() -> bool:
            return stopper.event.is_set() or (stop is not None and stop.is_set())

        n = 0
        while not stopped() and (rounds is None or n < rounds):
            n += 1
            before = ok_files(lib.store)
            try:
                report = lib.index(folder, **(index_options or {}))
            except Exception:
                if stopped():  # Ctrl+C in a terminal reaches the decode processes too; what was written is kept
                    break
                raise
            new = {p: i for p, i in ok_files(lib.store).items() if before.get(p) != i}  # new or changed files
            result = WatchRound(n, len(new), errors=list(report.error_files))
            if not stopped() and new:
                result.predicted = predict_paths(lib, new)
                if not result.predicted and lib.store.current_model() is None:
                    result.note = "no trained model yet: new images are indexed, not predicted"
                if sidecars is not None and result.predicted:
                    paths = {p for p, _, _ in result.predicted}
                    result.sidecars = len(lib.export_xmp(only=paths, **sidecars).actions)
            if on_round:
                on_round(result)
            deadline = time.monotonic() + interval
            while rounds is None or n < rounds:  # sleep in short steps so a stop is seen at once
                left = deadline - time.monotonic()
                if left <= 0 or stopped():
                    break
                stopper.event.wait(min(left, 0.2))
    return n
