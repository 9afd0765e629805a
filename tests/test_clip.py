"""The CLIP path, offline: a small open_clip model with random weights is saved to a local
checkpoint and loaded back through the real loading code (`--backbone clip:MODEL:FILE`)."""
from __future__ import annotations

import json

import pytest

from support import random_clip_checkpoint, run_cli

MODEL = "ViT-S-32-alt"  # a built-in open_clip architecture, small enough to build quickly


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return random_clip_checkpoint(tmp_path_factory.mktemp("clip"), MODEL)


def test_clip_checkpoint_index_search_and_name(checkpoint, photo_folder, tmp_path):
    store = tmp_path / "s"
    spec = f"clip:{MODEL}:{checkpoint}"
    out = run_cli("index", photo_folder, "--store", store, "--backbone", spec).stdout
    assert "12 embedded" in out and f"clip:{MODEL}:" in out

    hits = json.loads(run_cli("search", "a photo of a sunflower", "--store", store, "-k", "3", "--json").stdout)
    assert len(hits) == 3 and all(-1.0 <= h["score"] <= 1.0 for h in hits)
    assert hits[0]["score"] >= hits[-1]["score"]
    similar = json.loads(run_cli("similar", "watch/image_0001.jpg", "--store", store, "-k", "2", "--json").stdout)
    assert len(similar) == 2

    run_cli("cluster", "--store", store, "--min-cluster-size", "3")
    infos = json.loads(run_cli("clusters", "--store", store, "--json").stdout)
    assert any(c["suggestions"] for c in infos if c["id"] >= 0) or all(c["id"] < 0 for c in infos)

    # auto keeps the store's backbone instead of switching to another one
    again = run_cli("index", photo_folder, "--store", store).stdout
    assert "12 unchanged" in again


def test_clip_vectors_are_normalised_and_deterministic(checkpoint):
    import numpy as np
    from PIL import Image

    from organizer.embed import get_embedder

    emb = get_embedder(f"clip:{MODEL}:{checkpoint}")
    images = [Image.new("RGB", (300, 200), (200, 30, 30)), Image.new("RGB", (64, 64), (10, 200, 10))]
    a, b = emb.embed(images), emb.embed(images)
    assert a.dtype == np.float32 and a.shape == (2, emb.dim)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, b)


def test_unknown_clip_weights_give_a_clear_error(tmp_path, photo_folder):
    proc = run_cli("index", photo_folder, "--store", tmp_path / "s", "--backbone", "clip:ViT-B-32:no-such-tag",
                   check=False)
    assert proc.returncode != 0 and "unknown CLIP weights" in proc.stderr


def test_auto_is_offline_efficientnet(tmp_path, photo_folder):
    proc = run_cli("index", photo_folder, "--store", tmp_path / "s")
    assert "efficientnet-lite0" in proc.stdout and "CLIP weights are not on this machine" in proc.stderr
