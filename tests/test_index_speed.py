"""Issue 17's plumbing: the inference session opens while decoders start (only from a verified
cached export), and $ORGANIZER_PROFILE reports where an index run spent its time."""
from __future__ import annotations

import json
import os

from support import run_cli


def test_prepare_opens_a_cached_export_and_never_exports(sample_store, tmp_path, monkeypatch):
    from organizer.embed.efficientnet import EfficientNetLite0

    cached = EfficientNetLite0(cache_dir=sample_store / "cache", quiet=True)
    assert cached.prepare() is True
    assert cached.runtime == "onnxruntime"
    # Nothing cached anywhere: no head start (the export waits for real images to verify on).
    monkeypatch.setenv("ORGANIZER_USER_CACHE", "off")
    empty = EfficientNetLite0(cache_dir=tmp_path / "cache", quiet=True)
    assert empty.prepare() is False
    assert empty.runtime == "not started"
    assert not (tmp_path / "cache" / "onnx").exists() or not list((tmp_path / "cache" / "onnx").glob("*.onnx"))


def test_profile_reports_the_stages_of_a_run(sample_store, photo_folder, tmp_path):
    profile = tmp_path / "profile.json"
    run_cli("index", photo_folder, "--store", tmp_path / "store", "--backbone", "efficientnet-lite0",
            env={**os.environ, "HF_HUB_OFFLINE": "1", "ORGANIZER_PROFILE": str(profile)})
    stages = json.loads(profile.read_text())
    assert stages["embedded"] == 12 and stages["runtime"] == "onnxruntime"
    for key in ("scan", "first_items", "embed", "write"):
        assert stages[key] > 0, key
    assert stages["embed"] < 2 * stages["total"]  # two streams at most overlap
    assert not (tmp_path / "profile.json.tmp").exists()
