"""Shared fixtures: real stores built from sample_data through the real CLI."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import SAMPLE, copy_of, indexed_and_clustered  # noqa: E402


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory) -> Path:
    """sample_data indexed (efficientnet-lite0) and clustered; copy it before changing it."""
    store = tmp_path_factory.mktemp("sample-store") / "store"
    return indexed_and_clustered(SAMPLE, store)


@pytest.fixture
def store_copy(sample_store, tmp_path) -> Path:
    return copy_of(sample_store, tmp_path)


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """A small folder of real photos (3 classes x 4) that a test may change."""
    folder = tmp_path / "photos"
    for cls in ("airplanes", "sunflower", "watch"):
        (folder / cls).mkdir(parents=True)
        for src in sorted((SAMPLE / cls).glob("*.jpg"))[:4]:
            shutil.copy2(src, folder / cls / src.name)
    return folder
