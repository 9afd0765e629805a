"""One real Ray cluster (a head and a worker node on 127.0.0.1) for every Ray test of a run."""
from __future__ import annotations

import importlib.util

import pytest

HAVE_RAY = importlib.util.find_spec("ray") is not None


@pytest.fixture(scope="session")
def ray_cluster():
    if not HAVE_RAY:
        pytest.skip("Ray is not installed: pip install 'organizer[ray]'")
    from .cluster import LocalCluster

    cluster = LocalCluster()
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()
