"""Helpers shared by the tests (a uniquely named module, so no conftest shadows it)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch a model hub
# the verified ONNX export is shared per user; tests keep theirs out of ~/.cache (one per run)
os.environ.setdefault("ORGANIZER_USER_CACHE", tempfile.mkdtemp(prefix="organizer-test-user-cache-"))
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
SHARED = ROOT.parent / "shared"


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args, check=True, timeout=600, env=None) -> subprocess.CompletedProcess:
    """Run `organizer ARGS` in a fresh process, as a user would (`env`: the whole environment)."""
    proc = subprocess.run([sys.executable, "-m", "organizer", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or {**os.environ, "HF_HUB_OFFLINE": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"organizer {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def indexed_and_clustered(folder: Path, store: Path) -> Path:
    """`organizer index` (efficientnet-lite0) then `organizer cluster`, through the CLI."""
    run_cli("index", folder, "--store", store, "--backbone", "efficientnet-lite0")
    run_cli("cluster", "--store", store)
    return store


def copy_of(store: Path, tmp_path: Path) -> Path:
    """A test's own copy of a shared store, to change freely."""
    import shutil

    return Path(shutil.copytree(store, tmp_path / "store"))


def stored_vectors(store: Path) -> dict:
    """{image id: vector} read from a store's shards, checksums verified."""
    from organizer.store import Store
    from organizer.store.vectors import load_vectors

    s = Store(store, create=False)
    try:
        ids, X = load_vectors(s, verify=True)
        return dict(zip(ids, X))
    finally:
        s.close()


def truth(path: str) -> str:
    return path.split("/")[0]


CLIP_TEST_MODEL = "ViT-S-32-alt"  # a built-in open_clip architecture, small enough to build quickly


def random_clip_checkpoint(folder: Path, model_name: str = CLIP_TEST_MODEL) -> Path:
    """open_clip weights drawn at random (seed 0), saved as safetensors: the real loading path
    without a model hub."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model(model_name, pretrained=None)
    path = Path(folder) / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path
