"""11. A truncated or corrupt FAISS index, ONNX export or vector shard is detected by its
checksum and rebuilt: caches from the store, shards by re-embedding the original files
(`organizer repair`, or `organizer index` for a truncated or missing shard). Never a crash."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from support import SAMPLE, run_cli, stored_vectors

from .helpers import check_consistent, cli_env, copy_photos, run_org


@pytest.fixture
def small_store(empty_store, tmp_path):
    """24 photos in shards of 8 or 16 (so damage hits some images, not all), one label."""
    folder = tmp_path / "photos"
    copy_photos(folder, per_class=3, classes=8)
    subprocess.run([sys.executable, "-m", "organizer.cli", "index", str(folder), "--store", str(empty_store),
                    "--backbone", "efficientnet-lite0"], check=True, capture_output=True,
                   env=cli_env(ORGANIZER_FLUSH_EVERY="8"))
    run_cli("label", "watch/image_0001.jpg", "--as", "watch", "--store", empty_store)
    return empty_store


def shard_rows(store, path) -> int:
    import sqlite3

    with sqlite3.connect(store / "organizer.db") as db:
        return db.execute("SELECT rows FROM shards WHERE shard=?", (int(path.stem),)).fetchone()[0]


def flip(path, offset_fraction=0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * offset_fraction)] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_shard_is_reembedded_by_repair(small_store):
    before = stored_vectors(small_store)
    shards = sorted((small_store / "vectors").glob("*.f16"))
    assert len(shards) >= 2
    rows = shard_rows(small_store, shards[1])
    flip(shards[1])  # same size, one byte changed: only the checksum can tell
    proc = run_cli("similar", "watch/image_0001.jpg", "--store", small_store, check=False)
    assert proc.returncode != 0 and "corrupt" in proc.stderr and "organizer repair" in proc.stderr
    assert "Traceback" not in proc.stderr

    out = run_org("repair", "--store", small_store, "--json").stdout
    report = json.loads(out)
    assert [s for s, _ in report["bad_shards"]] == [int(shards[1].stem)]
    assert report["images_dropped"] == rows and report["images_reembedded"] == rows and report["images_pending"] == 0
    after = stored_vectors(small_store)
    assert after.keys() == before.keys()
    ids = sorted(before)
    assert np.abs(np.stack([after[i] for i in ids]) - np.stack([before[i] for i in ids])).max() < 2e-3
    run_cli("export", "--format", "csv", "--out", small_store.parent / "e.csv", "--store", small_store)
    assert ",watch,manual," in (small_store.parent / "e.csv").read_text()  # the label is still there
    assert json.loads(run_org("repair", "--store", small_store, "--json").stdout)["bad_shards"] == []
    assert len(run_cli("similar", "watch/image_0001.jpg", "--store", small_store, "-k", "3").stdout.splitlines()) == 3


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_truncated_or_missing_shard_is_healed_by_index(small_store, damage):
    before, library = stored_vectors(small_store), check_consistent(small_store)
    shard = sorted((small_store / "vectors").glob("*.f16"))[0]
    rows = shard_rows(small_store, shard)
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:1000])
    else:
        shard.unlink()
    proc = run_cli("cluster", "--store", small_store, check=False)
    assert proc.returncode != 0 and "organizer repair" in proc.stderr and "Traceback" not in proc.stderr
    out = run_cli("index", small_store.parent / "photos", "--store", small_store).stdout
    assert f"; {rows} images had a damaged vector file" in out and f" {rows} embedded" in out
    after = stored_vectors(small_store)
    assert after.keys() == before.keys() and check_consistent(small_store)["files"] == library["files"]


def test_damaged_search_index_is_rebuilt(small_store):
    run_cli("similar", "watch/image_0001.jpg", "--store", small_store)
    index = small_store / "index.faiss"
    for damage in ("truncate", "flip", "empty"):
        data = index.read_bytes()
        if damage == "truncate":
            index.write_bytes(data[: len(data) // 3])
        elif damage == "flip":
            flip(index, 0.9)
        else:
            index.write_bytes(b"")
        out = run_cli("similar", "watch/image_0001.jpg", "--store", small_store, "-k", "4").stdout
        assert len(out.splitlines()) == 4
    flip(index, 0.7)
    report = json.loads(run_org("repair", "--store", small_store, "--json").stdout)
    assert report["search_index"].startswith("damaged or stale, rebuilt (24 vectors)")
    assert json.loads(run_org("repair", "--store", small_store, "--json").stdout)["search_index"] == "ok"


def test_damaged_onnx_export_is_removed_and_exported_again(small_store, tmp_path):
    from organizer.embed.runtime import read_verified

    onnx = next((small_store / "cache" / "onnx").glob("*.onnx"))
    good = onnx.read_bytes()
    onnx.write_bytes(good[: len(good) // 2])
    report = json.loads(run_org("repair", "--store", small_store, "--json").stdout)
    assert report["onnx_removed"] == [onnx.name] and not onnx.exists()
    # the next run that needs the network exports it again and embeds normally
    (tmp_path / "photos" / "new.jpg").write_bytes((SAMPLE / "ketch" / "image_0009.jpg").read_bytes())
    out = run_cli("index", tmp_path / "photos", "--store", small_store).stdout
    assert " 1 embedded" in out and read_verified(onnx) is not None
