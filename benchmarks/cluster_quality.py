"""Cluster quality as a simulated user experiences it, from saved vectors.

    python benchmarks/cluster_quality.py X.npy y.npy [--seed 0] [--sim-seeds 0,1,2]
        [--subsample N] [--per-class N] [--set key=value ...]

X.npy: n x d float vectors (L2-normalized, as the product stores them); y.npy: true
class per row. Runs organizer.discover.cluster.cluster_vectors, then plays the user of
../shared/tools/simulate_user.py: clusters largest first, look at 12 random members,
name the cluster after a class holding >= half of them (each cluster = 1 naming action),
every exported member of a named cluster gets that name; LogisticRegression(C=1,
max_iter=1000) on the named vectors predicts every image; accuracy over all images.
"acc" names every exported member (labels, after placement); "acc_core" trains only
on HDBSCAN's core members of the named clusters. Several --sim-seeds are averaged
because 12-member looks are noisy.

Measured figures: benchmarks/README.md ("Cluster quality from saved vectors").
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def simulate(X, y, labels, *, seed=0, look=12, train_mask=None):
    """Return (accuracy, naming_actions, named_clusters, labeled_fraction)."""
    from sklearn.linear_model import LogisticRegression

    rng = random.Random(seed)
    members = collections.defaultdict(list)
    for i, c in enumerate(labels):
        if c >= 0:
            members[int(c)].append(i)
    names = np.full(len(y), None, dtype=object)
    actions = named = 0
    for cid in sorted(members, key=lambda k: -len(members[k])):
        idx = members[cid]
        top, cnt = collections.Counter(y[i] for i in rng.sample(idx, min(look, len(idx)))).most_common(1)[0]
        actions += 1
        if cnt * 2 < min(look, len(idx)):
            continue
        named += 1
        names[idx] = top
    m = np.array([v is not None for v in names])
    if train_mask is not None:
        m &= train_mask
    classes = set(names[m])
    if not classes:
        acc = 0.0
    elif len(classes) == 1:
        acc = float(np.mean(y == next(iter(classes))))
    else:
        clf = LogisticRegression(C=1.0, max_iter=1000).fit(X[m], names[m].astype(str))
        acc = float(np.mean(clf.predict(X) == y))
    return acc, actions, named, float(m.mean())


def main(argv=None):
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from organizer.discover.cluster import cluster_vectors

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("X")
    ap.add_argument("y")
    ap.add_argument("--seed", type=int, default=0, help="clustering seed")
    ap.add_argument("--sim-seeds", default="0,1,2", help="user-simulation seeds to average")
    ap.add_argument("--subsample", type=int, default=0, help="random subset of N rows first")
    ap.add_argument("--per-class", type=int, default=0, help="keep the first N rows of each class")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a default_params key, e.g. --set place_threshold=0.8")
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args(argv)

    X = np.load(a.X).astype(np.float32)
    y = np.load(a.y, allow_pickle=True).astype(str)
    if a.per_class:
        keep = np.concatenate([np.flatnonzero(y == c)[: a.per_class] for c in np.unique(y)])
        X, y = X[np.sort(keep)], y[np.sort(keep)]
    if a.subsample and a.subsample < len(y):
        keep = np.sort(np.random.default_rng(a.seed).choice(len(y), a.subsample, replace=False))
        X, y = X[keep], y[keep]
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}

    t = time.time()
    r = cluster_vectors(X, seed=a.seed, **overrides)
    secs = time.time() - t
    labels, core = r.labels, r.core_labels
    single = np.where(labels >= 0, labels, -np.arange(len(labels)) - 2)  # noise = singletons
    sims = [simulate(X, y, labels, seed=s) for s in map(int, a.sim_seeds.split(","))]
    sims_core = [simulate(X, y, labels, seed=s, train_mask=core >= 0) for s in map(int, a.sim_seeds.split(","))]
    out = {
        "n": len(y), "classes": len(set(y)), "n_clusters": r.n_clusters,
        "selection": r.params.get("selection_used"),
        "noise_before": round(float(np.mean(core < 0)), 4),
        "noise_after": round(float(np.mean(labels < 0)), 4),
        "nmi": round(float(normalized_mutual_info_score(y, single)), 4),
        "ari": round(float(adjusted_rand_score(y, single)), 4),
        "actions": sims[0][1],
        "named_mean": round(float(np.mean([s[2] for s in sims])), 2),
        "acc": round(float(np.mean([s[0] for s in sims])), 4),
        "acc_min": round(float(min(s[0] for s in sims)), 4),
        "acc_core": round(float(np.mean([s[0] for s in sims_core])), 4),
        "cluster_s": round(secs, 1),
        "params": r.params,
    }
    print(json.dumps(out, indent=1))
    print(f"SUMMARY n={out['n']} clusters={out['n_clusters']} noise={out['noise_before']}->{out['noise_after']} "
          f"nmi={out['nmi']} ari={out['ari']} actions={out['actions']} acc={out['acc']} "
          f"acc_core={out['acc_core']} time={out['cluster_s']}s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
