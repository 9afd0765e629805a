"""Fixtures of the reliability tests."""
from __future__ import annotations

import pytest

from .helpers import new_store


@pytest.fixture
def empty_store(sample_store, tmp_path):
    """A store with nothing indexed yet but the ONNX export already cached."""
    return new_store(sample_store, tmp_path / "store")
