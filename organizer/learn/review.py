"""The review queue: which unlabeled images to ask a person about next.

It mixes five needs: uncertainty (small margin between the two best classes; for a cluster-named
image far from its group, also the model's doubt about that name), density (an
uncertain image in a crowded region settles the label of many images, an outlier's answer
settles one), diversity (not K near-copies: greedy k-center over the uncertain pool), and rare
classes (images predicted as a class no person has confirmed yet get a boost), and outliers of
their group (a cluster-named image far from the rest of its cluster got its name by where the
clustering put it, not by what it shows; it gets the same boost as a rare class).

Before all that come the unchecked parts of named groups (``part_checks``): a person names a group
by looking at it as a whole, and the group tree may hold parts of it that the backbone tells apart
but that were too small to be shown on their own. One image of each such part (its most typical
one) settles whether the group's name is right for the whole part.

Candidates are every image a person has not labeled: a cluster name is only a guess for the
images of a mixed cluster, so they can be worth asking about too. `random` is the honest
yardstick (benchmarks/learning_loop.py compares against it) and a fair choice for a person who
wants an unbiased spot check of the model."""
from __future__ import annotations

import numpy as np


STRATEGIES = ("auto", "random")


def select_random(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)[:k]


DENSITY_POWER = 2.0   # cifar10 offline sim, 8 namings, 3 rounds of 30: 0.598 (power 2) vs 0.581 (none)
DENSITY_K = 10        # neighbours whose mean similarity is an image's density
DENSITY_ROWS = 20_000  # above this, density is measured for the most uncertain rows against a sample


def density(vectors: np.ndarray, rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """Mean cosine similarity of each of `rows` to its DENSITY_K nearest other vectors (exact up
    to DENSITY_ROWS vectors, else against a seeded sample of that many), scaled to [0, 1]."""
    import faiss

    from organizer.discover.cluster import sample_indices

    ref = sample_indices(len(vectors), DENSITY_ROWS, seed)
    k = int(min(DENSITY_K, len(ref) - 1))
    if k < 1:
        return np.ones(len(rows))
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors[ref], np.float32))
    sims = np.empty(len(rows))
    for i in range(0, len(rows), 4096):
        chunk = rows[i:i + 4096]
        sim, nbr = index.search(np.ascontiguousarray(vectors[chunk], np.float32), k + 1)
        self_hit = ref[nbr] == chunk[:, None]   # drop each row itself, keep k others
        sims[i:i + 4096] = np.where(self_hit.any(axis=1), np.nanmean(np.where(self_hit, np.nan, sim), axis=1),
                                    sim[:, :k].mean(axis=1))
    lo, hi = sims.min(), sims.max()
    return (sims - lo) / (hi - lo) if hi > lo else np.ones(len(rows))


def far_from_group(vectors: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """True for rows much further from their group's centre than the group's other members: cosine
    to the centre below Tukey's lower fence (Q1 - 1.5 IQR) of the group's own cosines. The fence is
    relative to each group's spread, so it holds for tight groups and loose ones alike; groups of
    fewer than 8 rows (too few for quartiles) and rows with no group (-1) are never flagged."""
    far = np.zeros(len(vectors), bool)
    for g in np.unique(groups[groups >= 0]):
        rows = np.flatnonzero(groups == g)
        if len(rows) < 8:
            continue
        centre = vectors[rows].mean(axis=0)
        cos = vectors[rows] @ (centre / max(float(np.linalg.norm(centre)), 1e-12))
        q1, q3 = np.percentile(cos, [25, 75])
        far[rows] = cos < q1 - 1.5 * (q3 - q1)
    return far


def select(vectors: np.ndarray, proba: np.ndarray, class_counts: np.ndarray, k: int, *,
           pool_factor: int = 20, seed: int = 0, density_power: float = DENSITY_POWER,
           far: np.ndarray | None = None, named: np.ndarray | None = None) -> np.ndarray:
    """Indices (into vectors/proba) of up to k images to review, most useful first.

    The uncertain pool is wide (20 per pick): a narrow one holds near-copies along one class
    boundary; on cifar10 (offline sim, 4 namings) pools of 20k-30k beat 10k by 0.8 points.
    far: rows far from their group (far_from_group); named: per row the column of the name it
    carries (-1: none). For a row that is both, a model sure of another class doubts the name as
    much as it can. Measured (benchmarks/library_shapes.py, seed 0, after 2 review rounds): the
    name's doubt for every named row cost power law 1.8 points (0.8736 -> 0.8557); only where the
    row is also far from its group, 0.8725 (caltech-small34 0.9249 either way)."""
    n = len(vectors)
    if n == 0 or k <= 0:
        return np.zeros(0, np.int64)
    top2 = np.sort(proba, axis=1)[:, -2:] if proba.shape[1] > 1 else np.hstack([np.zeros((n, 1)), proba])
    margin = top2[:, 1] - top2[:, 0]
    doubt = 1.0 - margin
    if named is not None and far is not None and (far & (named >= 0)).any():
        # a name doubted twice over: the image sits far from its group AND the model does not
        # back the name (either alone is common on a library's boundaries)
        has = np.flatnonzero(far & (named >= 0))
        doubt[has] = np.maximum(doubt[has], 1.0 - proba[has, named[has]])
    predicted = proba.argmax(axis=1)
    # favour classes no person has confirmed yet; a graded boost for merely less-labeled classes
    # cost 0.3 points on cifar10 (offline sim, 4 namings): it pulls picks off the real boundaries
    rarity = (class_counts[predicted] == 0).astype(np.float64)
    if far is not None:
        rarity = np.maximum(rarity, far.astype(np.float64))
    score = doubt * (1.0 + 0.5 * rarity)
    if density_power:
        # big libraries: density only where it can matter, the most uncertain rows
        rows = np.arange(n) if n <= DENSITY_ROWS else np.argsort(-score, kind="stable")[:DENSITY_ROWS]
        weight = np.zeros(n)
        weight[rows] = density(vectors, rows, seed) ** density_power
        score = score * weight
    pool = np.argsort(-score, kind="stable")[: min(n, max(k * pool_factor, k))]
    return pool[_k_center(vectors[pool], score[pool], k)]


def part_checks(vectors: np.ndarray, parts: np.ndarray, groups: np.ndarray, limit: int) -> np.ndarray:
    """Rows to ask about first, at most ``limit``: for each group (``groups``: per row, its flat
    cluster), its biggest part (``parts``: per row, a part id or -1), and of that part the member
    nearest its centre (cosine). Groups whose part is the bigger share of the group come first: a
    name wrong for a fifth of a group costs more than one wrong for a fortieth of it. One part per
    group a round, so a big class's many modes do not take the whole queue. The caller passes only
    parts no person has checked, minus each group's largest part (the one its name was given by)."""
    in_part = np.flatnonzero(parts >= 0)
    if not len(in_part):
        return np.zeros(0, np.int64)
    gids, gsizes = np.unique(groups, return_counts=True)
    group_size = dict(zip(gids.tolist(), gsizes.tolist()))
    order = in_part[np.argsort(parts[in_part], kind="stable")]   # rows grouped by part, one pass
    ids, starts = np.unique(parts[order], return_index=True)
    members = np.split(order, starts[1:])
    best: dict[int, tuple[float, int]] = {}
    for j, rows in enumerate(members):
        g = int(groups[rows[0]])
        share = len(rows) / max(group_size.get(g, 1), 1)
        if g not in best or share > best[g][0]:
            best[g] = (share, j)
    out = []
    for _, j in sorted(best.values(), key=lambda t: -t[0])[: max(limit, 0)]:
        rows = members[j]
        centre = vectors[rows].mean(axis=0)
        out.append(int(rows[np.argmax(vectors[rows] @ centre)]))
    return np.array(out, np.int64)


def with_checks_first(checks: np.ndarray, picked: np.ndarray, k: int) -> np.ndarray:
    """The part checks, then the usual picks that are not among them, k in all."""
    rest = [int(i) for i in picked if int(i) not in set(checks.tolist())]
    return np.array(list(checks) + rest, np.int64)[:k]


def _k_center(X: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Greedy k-center, starting at the highest score and weighting distance by score."""
    chosen = [int(np.argmax(score))]
    dist = 1.0 - X @ X[chosen[0]]
    while len(chosen) < min(k, len(X)):
        gain = dist * (0.5 + score)
        gain[chosen] = -np.inf
        nxt = int(np.argmax(gain))
        chosen.append(nxt)
        dist = np.minimum(dist, 1.0 - X @ X[nxt])
    return np.array(chosen, np.int64)


def held_out_proba(store, ids: list[str], proba: np.ndarray, classes: list[str]) -> np.ndarray:
    """`proba` with each image the current model trained on replaced by its out-of-fold answer.

    A model is sure of the very images it learned from (a cluster-named image reads 100%),
    so for those only the fold that held the image out says how much the model doubts its
    name. Images without a held-out answer (too few of their class for k-fold) keep theirs."""
    import json

    row = store.current_model()
    if row is None:
        return proba
    stem = store.models_dir / row["path"]
    try:
        snap = json.loads(stem.with_name(stem.name + ".oof.json").read_text())
        oof = np.load(stem.with_name(stem.name + ".oof.npy"), allow_pickle=False)
    except (OSError, ValueError):
        return proba  # trained without cross-validation, or the side files were removed
    if json.loads(row["classes"]) != list(classes) or len(oof) != len(snap["ids"]) or oof.shape[1] != proba.shape[1]:
        return proba
    where = {i: k for k, i in enumerate(snap["ids"]) if oof[k].sum() > 0}
    out = proba.copy()
    for r, image_id in enumerate(ids):
        k = where.get(image_id)
        if k is not None:
            out[r] = oof[k]
    return out
