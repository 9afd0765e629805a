"""The classifier over vector shards as Ray tasks: the same rows `predict_store` writes."""
from __future__ import annotations


import numpy as np

from organizer.store import Store
from organizer.engine_ray import (_ray, cluster_cpus, connect)


# -- per-row work over vector shards -----------------------------------------------------
def _present_by_shard(store: Store):
    """Yield (shard, image ids in shard-row order) for every present image, read from a second,
    read-only connection so the caller may write while this streams."""
    import sqlite3

    db = sqlite3.connect(f"file:{store.root / 'organizer.db'}?mode=ro", uri=True)
    try:
        cur = db.execute("SELECT i.id, i.shard FROM images i WHERE i.shard IS NOT NULL AND EXISTS "
                         "(SELECT 1 FROM files f WHERE f.image_id = i.id AND f.status='ok') "
                         "ORDER BY i.shard, i.shard_row")
        current, ids = None, []
        for image_id, shard in cur:
            if shard != current and ids:
                yield current, ids
                ids = []
            current = shard
            ids.append(image_id)
        if ids:
            yield current, ids
    finally:
        db.close()


def _predict_task(model, ids, vectors):
    return [(i, *p) for i, p in zip(ids, model.predict(np.asarray(vectors, np.float32)))]


def predict_store_ray(store: Store, *, address: str | None = None, workers: int | None = None) -> int:
    """`model.predict_store` as Ray tasks, one per vector shard: the same rows, replaced in
    one transaction; at most 2 x workers shards are in flight."""
    import time

    from organizer.learn.model import load_model
    from organizer.store.vectors import load_vectors

    ray = _ray()
    model = load_model(store)
    model_id = store.current_model()["id"]
    connect(address)
    window = 2 * (workers or cluster_cpus())
    task = ray.remote(num_cpus=1, max_retries=3)(_predict_task)
    model_ref = ray.put(model)
    n = 0
    now = time.time()

    def write(ref):
        rows = ray.get(ref)
        store.db.executemany("INSERT INTO predictions(image_id, model_id, label, best, confidence, margin, "
                             "created_at) VALUES(?,?,?,?,?,?,?)",
                             [(i, model_id, label, best, conf, margin, now) for i, label, best, conf, margin in rows])
        return len(rows)

    with store.transaction():
        store.db.execute("DELETE FROM predictions")
        pending = []
        for _, ids in _present_by_shard(store):
            _, X = load_vectors(store, ids)
            pending.append(task.remote(model_ref, ids, X.astype(np.float16)))
            if len(pending) >= window:
                n += write(pending.pop(0))
        for ref in pending:
            n += write(ref)
    return n
