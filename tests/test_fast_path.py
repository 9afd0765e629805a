"""The fast embedding path: ONNX Runtime (and bf16) agree with PyTorch on real photos, the ONNX
cache survives damage, and an index killed mid-way resumes to the same result."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support import ROOT, SAMPLE, random_clip_checkpoint, run_cli, stored_vectors

CLIP_MODEL = "ViT-S-32-alt"  # small built-in open_clip architecture, random weights


def photos(n_per_class: int = 2) -> list[Path]:
    return [p for cls in sorted(SAMPLE.iterdir()) if cls.is_dir() for p in sorted(cls.glob("*.jpg"))[:n_per_class]]


def pixels(embedder, paths) -> np.ndarray:
    from organizer.ingest.decode import decode_image

    pre = embedder.preprocess
    crops = [pre.crop(decode_image(p.read_bytes(), name=p.name, min_side=pre.size).image) for p in paths]
    return pre.normalize(np.stack(crops))


def cosines(a, b) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module", autouse=True)
def user_cache(tmp_path_factory):
    """A private per-user ONNX cache for this module: never ~/.cache, and empty at the start, so
    the first export really runs."""
    from organizer.embed.runtime import USER_CACHE_ENV

    folder = tmp_path_factory.mktemp("user-cache")
    old = os.environ.get(USER_CACHE_ENV)
    os.environ[USER_CACHE_ENV] = str(folder)
    yield folder / "onnx"
    if old is None:
        os.environ.pop(USER_CACHE_ENV, None)
    else:
        os.environ[USER_CACHE_ENV] = old


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory):
    return random_clip_checkpoint(tmp_path_factory.mktemp("clip"), CLIP_MODEL)


@pytest.fixture(scope="module")
def effnet(tmp_path_factory):
    """(PyTorch embedder, a cache dir holding a verified export): exported once for the module."""
    from organizer.embed.efficientnet import EfficientNetLite0

    cache = tmp_path_factory.mktemp("effnet") / "cache"
    torch_ = EfficientNetLite0(runtime="torch")
    onnx = EfficientNetLite0(cache_dir=cache, runtime="onnx", quiet=True)
    onnx._model = torch_.model  # same weights; spares a second load
    onnx.embed_arrays(pixels(onnx, photos(1)))
    assert onnx.runtime == "onnxruntime"
    return torch_, cache


def test_efficientnet_onnx_matches_pytorch_and_cache_is_checked(effnet, tmp_path):
    from organizer.embed.efficientnet import EfficientNetLite0

    torch_, shared = effnet
    cache = tmp_path / "cache"
    shutil.copytree(shared, cache)
    onnx = EfficientNetLite0(cache_dir=cache, runtime="onnx", quiet=True)
    x = pixels(onnx, photos())
    a, _ = onnx.embed_arrays(x)
    b, _ = torch_.embed_arrays(x)
    assert onnx.runtime == "onnxruntime" and torch_.runtime == "torch"
    assert cosines(a, b).min() >= 0.999
    files = list((cache / "onnx").glob("*.onnx"))
    assert len(files) == 1 and files[0].with_suffix(".json").exists()
    name = files[0].name
    assert name.startswith("efficientnet-lite0-torch") and "-onnx" in name and "-ort" in name

    # a truncated file is detected (checksum) and exported again, never handed to ONNX Runtime
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 3])
    again = EfficientNetLite0(cache_dir=cache, runtime="onnx", quiet=True)
    again._model = torch_.model  # same weights; spares the test a second load
    c, _ = again.embed_arrays(x)
    assert again.runtime == "onnxruntime" and files[0].read_bytes() == data
    assert cosines(a, c).min() >= 0.9999


def test_user_cache_serves_a_new_store_and_is_checked(effnet, user_cache, tmp_path, monkeypatch, capsys):
    from organizer.embed import runtime
    from organizer.embed.efficientnet import EfficientNetLite0

    shared = list(user_cache.glob("efficientnet-lite0-*.onnx"))
    assert len(shared) == 1 and shared[0].with_suffix(".json").exists()  # published by the first export
    exports = []
    monkeypatch.setattr(runtime, "export_onnx", lambda *a, **k: exports.append(1) or 1 / 0)
    x = pixels(effnet[0], photos(1))
    reference, _ = effnet[0].embed_arrays(x)

    fresh = EfficientNetLite0(cache_dir=tmp_path / "a", runtime="onnx", quiet=True)
    v, _ = fresh.embed_arrays(x)  # no export, no PyTorch model: the user cache's verified file
    assert fresh.runtime == "onnxruntime" and not exports and fresh._model is None
    assert cosines(v, reference).min() >= 0.999
    copied = tmp_path / "a" / "onnx" / shared[0].name
    assert runtime.read_verified(copied) is not None  # the store now stands alone

    damaged = bytearray(shared[0].read_bytes())  # same length, one byte changed
    damaged[len(damaged) // 2] ^= 0xFF
    shared[0].unlink()  # the store's copy may be a hard link to it: replace, do not write through
    shared[0].write_bytes(bytes(damaged))
    other = EfficientNetLite0(cache_dir=tmp_path / "b", runtime="onnx")
    other._model = effnet[0].model
    other.embed_arrays(x)
    assert exports == [1] and other.runtime == "torch"  # rejected, so it tried to export
    assert not shared[0].exists() and "PyTorch" in capsys.readouterr().err
    assert runtime.read_verified(copied) is not None  # the first store's copy is untouched


def test_user_cache_is_pruned_oldest_first(tmp_path):
    from organizer.embed.runtime import prune

    for i, name in enumerate(("old", "mid", "new")):
        (tmp_path / f"{name}.onnx").write_bytes(b"x" * 100)
        (tmp_path / f"{name}.json").write_text("{}")
        os.utime(tmp_path / f"{name}.onnx", (1000 + i, 1000 + i))
    prune(tmp_path, limit=250)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mid.json", "mid.onnx", "new.json", "new.onnx"]


def test_damaged_cache_files_are_rejected(tmp_path):
    from organizer.embed.runtime import read_verified, write_verified

    path = tmp_path / "model.onnx"
    tmp = tmp_path / "model.onnx.tmp"
    tmp.write_bytes(b"0123456789" * 1000)
    write_verified(tmp, path, {"backbone": "x"})
    assert read_verified(path)["backbone"] == "x"

    flipped = bytearray(path.read_bytes())  # same length, one byte changed
    flipped[5000] ^= 0xFF
    path.write_bytes(bytes(flipped))
    assert read_verified(path) is None and not path.exists()  # removed, so it is exported again

    tmp.write_bytes(b"abc" * 100)
    write_verified(tmp, path, {"backbone": "x"})
    path.with_suffix(".json").write_text("{not json")
    assert read_verified(path) is None and not path.exists()
    assert read_verified(tmp_path / "never-written.onnx") is None


def test_failed_export_falls_back_to_pytorch_with_a_notice(effnet, tmp_path, capsys, monkeypatch):
    from organizer.embed import runtime
    from organizer.embed.efficientnet import EfficientNetLite0

    calls = []

    def broken_export(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("exporter unavailable")

    monkeypatch.setattr(runtime, "export_onnx", broken_export)
    x = np.zeros((1, 3, 224, 224), np.float32)
    emb = EfficientNetLite0(cache_dir=tmp_path / "cache", runtime="onnx")
    emb._model = effnet[0].model
    v, _ = emb.embed_arrays(x)
    assert emb.runtime == "torch" and v.shape == (1, 1280)
    err = capsys.readouterr().err
    assert "exporter unavailable" in err and "PyTorch" in err
    # the failure is remembered: the next start does not pay for the export again
    again = EfficientNetLite0(cache_dir=tmp_path / "cache", runtime="onnx")
    again._model = effnet[0].model
    again.embed_arrays(x)
    assert again.runtime == "torch" and len(calls) == 1


def test_clip_tower_onnx_and_bf16_match_pytorch(clip_checkpoint, tmp_path, user_cache):
    from organizer.embed.clip import ClipEmbedder
    from organizer.embed.runtime import bf16_runner

    emb = ClipEmbedder(CLIP_MODEL, str(clip_checkpoint), runtime="onnx", cache_dir=tmp_path / "cache", quiet=True)
    x = pixels(emb, photos())
    onnx = emb.features(x)
    assert emb.runtime == "onnxruntime"
    assert not list(user_cache.glob("clip-*"))  # weights known only by a file path stay with the store
    fp32 = emb._reference(x)  # the PyTorch fp32 tower
    assert cosines(fp32, onnx).min() >= 0.999
    bf16 = bf16_runner(emb._tower(), emb._reference, x[:2], emb.preprocess.size)
    assert cosines(fp32, bf16(x)).min() >= 0.99
    # text stays in PyTorch fp32 and lands in the same space
    t = emb.embed_text(["a photo of a watch"])
    assert t.shape == (1, emb.dim) and np.isclose(np.linalg.norm(t), 1.0, atol=1e-5)


def test_runtime_choice_follows_the_cpu():
    from organizer.embed.runtime import candidates

    amx = frozenset({"avx512f", "amx_tile", "amx_bf16"})
    plain = frozenset({"avx2"})
    cache = Path("/tmp/x")
    assert candidates("transformer", "auto", cache, amx) == ["torch-bf16", "onnx", "torch"]
    assert candidates("transformer", "auto", cache, plain) == ["onnx", "torch"]
    assert candidates("convnet", "auto", cache, amx) == ["onnx", "torch"]
    assert candidates("convnet", "auto", None, amx) == ["torch"]  # nowhere to keep an export
    assert candidates("convnet", "torch", cache, amx) == ["torch"]


def test_preprocess_crop_then_normalize_equals_direct_float_path():
    from PIL import Image

    from organizer.embed import Preprocess

    pre = Preprocess(224)
    im = Image.open(photos(1)[0]).convert("RGB")
    crop = pre.crop(im)
    direct = (crop.astype(np.float32) * np.float32(1 / 255) - np.asarray(pre.mean, np.float32)) \
        / np.asarray(pre.std, np.float32)
    assert np.array_equal(pre(im), direct.transpose(2, 0, 1))
    assert np.array_equal(pre.normalize(crop[None].astype(np.float32)), pre.normalize(crop[None]))


# -- interrupted indexing ------------------------------------------------------------------
def _db_rows(store: Path):
    with sqlite3.connect(store / "organizer.db") as db:
        files = sorted(db.execute("SELECT path, image_id, status FROM files"))
        shards = db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
    return files, shards




def test_index_killed_midway_resumes_to_the_same_result(effnet, tmp_path):
    folder = tmp_path / "photos"
    for p in photos(8):
        (folder / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, folder / p.parent.name / p.name)
    n_files = len(list(folder.rglob("*.jpg")))
    reference = tmp_path / "reference"
    store = tmp_path / "interrupted"
    for s in (reference, store):  # the module's export: this test is about resuming, not exporting
        shutil.copytree(effnet[1], s / "cache")
    run_cli("index", folder, "--store", reference, "--backbone", "efficientnet-lite0")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ORGANIZER_FLUSH_EVERY": "8"}
    proc = subprocess.Popen([sys.executable, "-m", "organizer.cli", "index", str(folder), "--store", str(store),
                             "--backbone", "efficientnet-lite0"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = 0
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if (store / "organizer.db").exists():
                try:
                    committed = _db_rows(store)[1]
                except sqlite3.Error:
                    committed = 0
                if committed >= 1:
                    break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    files_at_kill, shards_at_kill = _db_rows(store)
    assert shards_at_kill >= 1, "the index never committed a shard before it was killed"
    assert len(files_at_kill) < n_files, "the index finished before it could be interrupted"

    out = run_cli("index", folder, "--store", store).stdout  # auto keeps the store's backbone
    embedded = int(out.split(" embedded")[0].split()[-1])
    assert 0 < embedded <= n_files - len([f for f in files_at_kill if f[2] == "ok"])  # resumed, not redone
    assert _db_rows(store)[0] == _db_rows(reference)[0]
    a, b = stored_vectors(store), stored_vectors(reference)
    assert a.keys() == b.keys() and len(a) == n_files
    ids = sorted(a)
    assert cosines(np.stack([a[i] for i in ids]), np.stack([b[i] for i in ids])).min() > 0.9999
    assert not list((store / "vectors").glob("*.tmp"))
