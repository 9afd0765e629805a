"""Label errors: labeled images whose name looks wrong, most suspicious first.

Two kinds of evidence, because a wrongly named cluster is self-consistent (every image of it
carries the same wrong name, so a model trained on those labels agrees with them):

* outlier: the image's nearest labeled images of another class are closer than those of its own
  class (a kNN vote that holds the image itself out). Catches single mistakes, e.g. a watch that
  sits in the "airplanes" cluster, or a wrong answer a person gave.
* separate mode: the class is made of several groups (clusters named alike, plus a person's
  labels), and this group's images find no image of their class outside their own group among
  their nearest labeled neighbours. Holding the whole group out is what defeats its consistency.
  Smaller modes score higher: when a cluster of cats is named "dog" while the real dogs form a
  larger group, the cats are the odd ones out. (Two equally large modes score alike: both are
  shown, and the person decides.)
  A group whose nearest outside images are its own class still scores SPLIT_FLOOR of that: a
  cluster of sunflowers named "bonsai" lies next to the real bonsai (both plants), so their
  support is full, yet one name over two separate groups is worth one look. Scoring at most
  SPLIT_FLOOR, it ranks below the clear signals, so classes with a real second mode (dogs
  indoors and outdoors) mostly lengthen the end of the list.

What cannot be seen: a cluster given a wrong name that no other group uses (cats named "fox")
is consistent inside and unique outside, so neither signal fires; only the naming suggestions
shown beside each cluster help there.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from organizer.store import Store

K = 10
MAX_LABELED = 20_000   # above this a seeded sample is checked (time grows with the square)
PERSON_TRUST = 0.5     # a person's own label is flagged at half the score of the same evidence
MIN_GROUP = 3
SPLIT_FLOOR = 0.1     # a separate group of a class is flagged at least this much (times its smallness)


@dataclass
class LabelIssue:
    """A labeled image whose name looks wrong."""
    image_id: str
    path: str
    label: str                      # the name it carries
    source: str                     # who gave it: cluster, manual, accepted
    suggested: str                  # the name its neighbours and the model point to
    score: float                    # how suspicious, 0..1 (0: not at all)
    reason: str


def find_label_issues(store: Store, *, limit: int | None = None, everything: bool = False) -> list[LabelIssue]:
    """Suspicious labels, most suspicious first; `everything` ranks every labeled image (score 0 last)."""
    from organizer.learn.model import PERSON_SOURCES
    from organizer.learn.classify import pca
    from organizer.discover.cluster import sample_indices
    from organizer.store.vectors import load_vectors

    rows = {r[0]: (r[1], r[2]) for r in store.db.execute("SELECT image_id, name, source FROM labels")}
    ids = [i for i in store.present_image_ids() if i in rows]
    ids = [ids[j] for j in sample_indices(len(ids), MAX_LABELED, 0)]
    if len(ids) < 3:
        return []
    names = [rows[i][0] for i in ids]
    person = np.array([rows[i][1] in PERSON_SOURCES for i in ids])
    clusters = store.cluster_assignments()
    group_key = [("person", i) if person[j] else ("cluster", clusters.get(i, (-1, 0))[0], names[j])
                 for j, i in enumerate(ids)]
    keys = {k: n for n, k in enumerate(dict.fromkeys(group_key))}
    group = np.array([keys[k] for k in group_key])
    classes = sorted(set(names))
    y = np.array([classes.index(n) for n in names])
    _, X = load_vectors(store, ids)
    mu, V = pca(X)
    Z = (X - mu) @ V.T
    Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    scores = _scores(Z, y, group, person, len(classes))
    paths = store.primary_paths(ids)
    order = np.argsort(-scores[0], kind="stable")
    out = []
    for j in order:
        if scores[0][j] <= 0 and not everything:
            break
        out.append(LabelIssue(ids[j], paths[ids[j]], names[j], rows[ids[j]][1], classes[int(scores[1][j])],
                              round(float(scores[0][j]), 4), scores[2][j]))
        if limit and len(out) >= limit:
            break
    return out


def _scores(Z, y, group, person, n_classes, chunk: int = 1024):
    """(score, suggested class, reason) per labeled image."""
    n = len(y)
    class_size = np.bincount(y, minlength=n_classes)
    group_size = np.bincount(group)
    # a class is "several groups" only when it spans several clusters of some size: a person's
    # one-by-one labels (each its own group) confirm a class, they do not split it (counting them
    # made one review answer flag every other image of its class)
    groups_per_class = collections.defaultdict(set)
    for g, c, p in zip(group, y, person):
        if not p and group_size[g] >= MIN_GROUP:
            groups_per_class[c].add(g)
    multi = np.array([len(groups_per_class[c]) > 1 for c in range(n_classes)])
    score = np.zeros(n, np.float32)
    suggested = y.copy()
    reason = [""] * n
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        sims = Z[rows] @ Z.T
        sims[np.arange(len(rows)), rows] = -np.inf  # an image is never its own neighbour
        # outlier: mean similarity to the K nearest of each class, as a soft vote
        per_class = np.full((len(rows), n_classes), -1.0, np.float32)
        for c in range(n_classes):
            cols = np.nonzero(y == c)[0]
            kk = min(K, len(cols))
            top = -np.partition(-sims[:, cols], kk - 1, axis=1)[:, :kk]
            per_class[:, c] = np.where(np.isfinite(top), top, -1.0).mean(axis=1)
        vote = np.exp((per_class - per_class.max(axis=1, keepdims=True)) / 0.02)
        vote /= vote.sum(axis=1, keepdims=True)
        # separate mode: the nearest labeled images outside the image's own group
        outside = sims.copy()
        outside[group[rows][:, None] == group[None, :]] = -np.inf
        near = np.argpartition(-outside, min(K, n - 1) - 1, axis=1)[:, :K]
        near_ok = np.take_along_axis(outside, near, axis=1) > -np.inf
        for r, i in enumerate(rows):
            own = y[i]
            best = int(np.argmax(vote[r]))
            outlier = (1.0 - vote[r, own]) if best != own and class_size[own] > 1 else 0.0
            mode = 0.0
            if multi[own] and not person[i] and group_size[group[i]] >= MIN_GROUP and near_ok[r].any():
                labs = y[near[r][near_ok[r]]]
                support = float((labs == own).mean())
                mode = max(1.0 - support, SPLIT_FLOOR) * (1.0 - group_size[group[i]] / class_size[own])
                other = np.bincount(labs[labs != own], minlength=n_classes) if (labs != own).any() else None
            s = max(outlier, mode) * (PERSON_TRUST if person[i] else 1.0)
            if s > 0:
                score[i] = s
                if mode > outlier and other is not None:
                    suggested[i], reason[i] = int(np.argmax(other)), "its group is a separate mode of the class"
                elif mode > outlier:  # only the floor: no other class to point at but the nearest
                    suggested[i] = int(np.argmax(np.where(np.arange(n_classes) == own, -1.0, vote[r])))
                    reason[i] = "its group is apart from the rest of the class: is it the same thing?"
                else:
                    suggested[i], reason[i] = best, "nearer to another class"
    return score, suggested, reason
