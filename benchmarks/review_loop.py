"""The naming + review loop in one process, on a clustered store, for several naming seeds.

    python benchmarks/review_loop.py STORE [--seeds 0,1,2] [--noise-class NAME] [--rounds 2] [--per-round 30]

STORE: a store that was indexed and clustered (its folder names are the true classes, as in
../shared/datasets). Each seed works on a copy: the simulated person looks at 12 random members of
each cluster, largest first, and names it after their majority (as ../shared/tools/simulate_user.py
does), then train, predict and review rounds whose images are labeled with their true class. Prints
accuracy after naming and after each round. Faster than simulate_user (no process per command), so
several naming outcomes can be compared; simulate_user stays the yardstick."""
from __future__ import annotations

import argparse
import collections
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np


def run(store: Path, seed: int, noise: str | None, rounds: int, per_round: int) -> list[float]:
    from organizer.library import Library

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "store"
        shutil.copytree(store, work, ignore=shutil.ignore_patterns("index.lock"))
        lib = Library(str(work))
        paths = lib.paths()
        truth = {i: p.split("/")[0] for i, p in paths.items()}
        with lib.store.transaction():
            lib.store.db.execute("DELETE FROM labels")
        rng = random.Random(seed)
        for c in sorted((c for c in lib.clusters(samples=0) if c.id >= 0), key=lambda c: -c.size):
            members = lib.cluster_members(c.id)
            look = rng.sample(members, min(12, len(members)))
            top, n = collections.Counter(truth[i] for i in look).most_common(1)[0]
            if n * 2 >= len(look) and top != noise:
                lib.name_cluster(c.id, top)

        def accuracy() -> float:
            lib.train()
            lib.predict()
            said = {p.image_id: p.label for p in lib.predictions()}
            pairs = [(t, said.get(i)) for i, t in truth.items() if t != noise]
            return round(float(np.mean([t == p for t, p in pairs])), 4)

        out = [accuracy()]
        for _ in range(rounds):
            by_class = collections.defaultdict(list)
            for item in lib.review(per_round):
                if truth[item.image_id] != noise:
                    by_class[truth[item.image_id]].append(item.image_id)
            for name, ids in by_class.items():
                lib.label_ids(ids, name)
            out.append(accuracy())
        lib.close()
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--noise-class", default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--per-round", type=int, default=30)
    a = ap.parse_args()
    for seed in [int(s) for s in a.seeds.split(",")]:
        accs = run(Path(a.store), seed, a.noise_class, a.rounds, a.per_round)
        print(f"seed {seed}: after naming {accs[0]}" + "".join(
            f", round {r + 1} {x}" for r, x in enumerate(accs[1:])), flush=True)


if __name__ == "__main__":
    main()
