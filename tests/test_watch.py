"""`organizer watch`: a real process polling a folder; a file copied in while it runs is indexed,
predicted and given a sidecar; SIGINT stops it cleanly."""
from __future__ import annotations

import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from interop_support import child_env, trained_store, with_library_copy
from organizer.export import xmp


@pytest.fixture
def library(sample_store, tmp_path_factory, tmp_path):
    return with_library_copy(trained_store(sample_store, tmp_path_factory.mktemp("trained")), tmp_path)


def lines_of(stream, q):
    for line in stream:
        q.put(line)
    q.put(None)


def next_round(q, deadline):
    """The next JSON round the watcher prints, or None at the deadline."""
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is None:
            return None
        if line.startswith("{"):
            return json.loads(line)
    return None


def test_watch_picks_up_a_new_file_then_stops_on_sigint(library, tmp_path):
    from PIL import Image, ImageOps

    store, photos = library
    sidecars = tmp_path / "sidecars"
    proc = subprocess.Popen([sys.executable, "-m", "organizer.cli", "watch", str(photos), "--store", str(store),
                             "--interval", "0.5", "--json", "--sidecars", str(sidecars)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    q: queue.Queue = queue.Queue()
    threading.Thread(target=lines_of, args=(proc.stdout, q), daemon=True).start()
    try:
        first = next_round(q, time.monotonic() + 120)
        assert first is not None and first["new_files"] == 0, first  # everything was indexed already
        # a new photo (new content: a mirrored sunflower) arrives while it runs, written elsewhere and moved in
        src = photos / "sunflower" / "image_0004.jpg"
        staged = tmp_path / "new.jpg"
        ImageOps.mirror(Image.open(src)).save(staged, quality=92)
        (photos / "incoming").mkdir()
        shutil.move(staged, photos / "incoming" / "new.jpg")
        found = None
        deadline = time.monotonic() + 120
        while found is None and time.monotonic() < deadline:
            r = next_round(q, deadline)
            if r is None:
                break
            found = next((p for p in r["predicted"] if p[0] == "incoming/new.jpg"), None)
        assert found is not None, "the new file was not picked up"
        assert found[1] == "sunflower"
        side = sidecars / "incoming" / "new.jpg.xmp"
        assert side.exists() and xmp.keywords(side.read_bytes())["dc:subject"] == ["sunflower"]
        assert not any(p.suffix == ".xmp" for p in photos.rglob("*"))  # nothing written beside the photos

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert "stopped after" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
