"""Indexing speed-ups must not change what is embedded: sample_data's vectors, as `organizer index`
makes them now, against a reference stored before the issue-17 changes (commit ad5d6d1)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from support import stored_vectors

REFERENCE = Path(__file__).parent / "fixtures" / "sample_vectors_efficientnet_lite0.npz"


def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE, allow_pickle=False) as z:  # plain arrays: strings and float16
        return dict(zip(z["paths"].tolist(), z["vectors"].astype(np.float32)))


def test_sample_data_vectors_match_the_reference(sample_store):
    from organizer.store import Store

    s = Store(sample_store, create=False)
    try:
        paths = dict(s.db.execute("SELECT path, image_id FROM files WHERE status='ok'").fetchall())
    finally:
        s.close()
    vectors = stored_vectors(sample_store)
    ref = reference()
    assert sorted(paths) == sorted(ref), "sample_data changed: rebuild the reference with the pre-change code"
    a = np.stack([ref[p] for p in sorted(ref)])
    b = np.stack([vectors[paths[p]] for p in sorted(ref)])
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    worst = sorted(ref)[int(np.argmin(cos))]
    assert cos.min() >= 0.999, f"vectors changed: cosine {cos.min():.5f} for {worst}"
    # The control: the check can fail. Another image's vector is far below the bar.
    assert float((a[0] * b[1]).sum() / (np.linalg.norm(a[0]) * np.linalg.norm(b[1]))) < 0.99
