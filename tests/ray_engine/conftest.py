"""One real Ray cluster (a head and a worker node on 127.0.0.1) for every Ray test of a run."""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'organizer[ray]'")


@pytest.fixture(scope="session")
def ray_cluster():
    from .cluster import LocalCluster

    cluster = LocalCluster()
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()
