"""A store of synthetic vectors without images, recorded as the indexer records them: what
`organizer cluster` needs, at sizes sample_data cannot give (tests and benchmarks/bench_ray.py)."""
from __future__ import annotations

import time
from pathlib import Path


def synthetic_store(path: Path, n: int, dim: int = 1280, shard_rows: int = 4096, centres: int = 60) -> Path:
    """n unit vectors around `centres` centres (float16-exact, as the store keeps them)."""
    import numpy as np

    from organizer.store import Store
    from organizer.store.vectors import write_shard

    path.mkdir(parents=True, exist_ok=True)
    store = Store(path)
    store.set_meta("backbone", "efficientnet-lite0")
    store.set_meta("dim", str(dim))
    rng = np.random.default_rng(0)
    middle = rng.normal(size=(centres, dim))
    now = time.time()
    for lo in range(0, n, shard_rows):
        m = min(shard_rows, n - lo)
        x = middle[rng.integers(0, centres, m)] + 0.9 * rng.normal(size=(m, dim))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
        with store.transaction():
            shard = write_shard(store, x)
            rows = [(f"{lo + i:032x}", shard, i, now) for i in range(m)]
            store.db.executemany("INSERT INTO images(id, shard, shard_row, feature_norm, created_at) "
                                 "VALUES(?,?,?,1.0,?)", rows)
            store.db.executemany("INSERT INTO files(path, image_id, size, mtime_ns, status, last_seen) "
                                 "VALUES(?,?,0,0,'ok',?)", [(f"f/{r[0]}.jpg", r[0], now) for r in rows])
    store.close()
    return path
