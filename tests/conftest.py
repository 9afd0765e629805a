"""Shared fixtures: real stores built from sample_data through the real CLI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch a model hub
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
SHARED = ROOT.parent / "shared"


def run_cli(*args, check=True, timeout=600) -> subprocess.CompletedProcess:
    """Run `organizer ARGS` in a fresh process, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "organizer.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"organizer {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def truth(path: str) -> str:
    return path.split("/")[0]


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory) -> Path:
    """sample_data indexed (efficientnet-lite0) and clustered; copy it before changing it."""
    store = tmp_path_factory.mktemp("sample-store") / "store"
    run_cli("index", SAMPLE, "--store", store, "--backbone", "efficientnet-lite0")
    run_cli("cluster", "--store", store)
    return store


@pytest.fixture
def store_copy(sample_store, tmp_path) -> Path:
    dest = tmp_path / "store"
    shutil.copytree(sample_store, dest)
    return dest


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """A small folder of real photos (3 classes x 4) that a test may change."""
    folder = tmp_path / "photos"
    for cls in ("airplanes", "sunflower", "watch"):
        (folder / cls).mkdir(parents=True)
        for src in sorted((SAMPLE / cls).glob("*.jpg"))[:4]:
            shutil.copy2(src, folder / cls / src.name)
    return folder
