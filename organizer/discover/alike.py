"""How alike a group's members are in the backbone's own space (not the reduced one), from sums of
unit vectors: exact, one pass over the rows in chunks (a memory-mapped matrix is read, never held),
O(rows x dims). Used by cluster.py for placement and for hierarchy rule 5."""
from __future__ import annotations

import numpy as np

from organizer.discover.hierarchy import mean_pair_distance, pair_distance, tight_unsorted_groups, unit_rows

_CHUNK = 8192  # rows per block: float64 copies of a block of 1280-d rows stay near 80 MB


def group_sums(X, labels):
    """Per group (labels 0..k-1; -1 ignored): the sum of its members' unit vectors, and its size;
    in chunks, so a memory-mapped X is read once."""
    from scipy.sparse import csr_matrix

    k = int(labels.max()) + 1
    sums, counts = np.zeros((k, X.shape[1])), np.bincount(labels[labels >= 0], minlength=k)
    for i in range(0, len(X), _CHUNK):
        part = labels[i:i + _CHUNK]
        ok = np.flatnonzero(part >= 0)
        onehot = csr_matrix((np.ones(len(ok)), (part[ok], ok)), shape=(k, len(part)))
        sums += onehot @ unit_rows(X[i:i + _CHUNK]).astype(np.float64)
    return sums, counts


def distance_to_group(Xr, groups, sums, counts, member=False):
    """Mean cosine distance of each row of Xr to the members of its group (excluding itself when
    ``member``)."""
    blocks = range(0, len(Xr), _CHUNK)
    dot = np.concatenate([np.einsum("ij,ij->i", unit_rows(Xr[i:i + _CHUNK]).astype(np.float64),
                                    sums[groups[i:i + _CHUNK]]) for i in blocks] or [np.zeros(0)])
    n = counts[groups].astype(np.float64)
    return 1.0 - (dot - 1.0) / np.maximum(n - 1, 1) if member else 1.0 - dot / np.maximum(n, 1)


def farthest_member(X, labels, sums, counts):
    """Per group, the largest mean distance of one of its members to the others."""
    out = np.zeros(len(counts))
    for i in range(0, len(X), _CHUNK):
        part = labels[i:i + _CHUNK]
        ok = np.flatnonzero(part >= 0)
        if len(ok):
            d = distance_to_group(X[i:i + _CHUNK][ok], part[ok], sums, counts, member=True)
            np.maximum.at(out, part[ok], d)
    return out


def tight_groups_beside_tree(X, labels, idx, max_fit, seed):
    """hierarchy rule 5 over the unsorted rows (a seeded sample of max_fit of them, if more), with
    the fit sample as the rest of the library they are told apart from."""
    unsorted = np.flatnonzero(labels < 0)
    if len(unsorted) > max_fit:
        unsorted = np.sort(np.random.default_rng(seed).choice(unsorted, max_fit, replace=False))
    if len(unsorted) == 0:
        return []
    if labels.max() < 0:
        loosest = pair_distance(unit_rows(X[idx]))
    else:
        sums, counts = group_sums(X, labels)
        loosest = float(np.max(mean_pair_distance((sums * sums).sum(axis=1), counts)))
    return tight_unsorted_groups(X, unsorted, idx, loosest)
