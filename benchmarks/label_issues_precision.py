"""Label issues: precision as well as recall, on correctly named libraries and on planted mistakes.

Truth is each image's folder. A library is named as a careful person would: every cluster after
the folder most of its images come from. Images whose name then differs from their folder (the
few strays of a mixed cluster) are real label errors. Cases:

* by-folder: that naming only (a correctly named library, up to its strays);
* cluster TRUE=NAME: the cluster of TRUE named NAME instead (the "cats named dog" slip);
* person 2%: by-folder plus 2% of images given another class by hand (a careless person).

For each case: the list `organizer issues` shows (score > 0, most suspicious first); precision
and recall in its first 10% of the labeled images; how many of the first screen (24, what the
app shows) are correctly named; and the same with the "one name over two groups" floor off
(`--floor` sets organizer.learn.label_issues.SPLIT_FLOOR, to compare).

    python benchmarks/label_issues_precision.py --store ../stores/caltech101-8 --floor 0.1 --floor 0
Works on a copy of an indexed store (clusters it once if it has no clustering).
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
SCREEN = 24


def name_by_folder(lib, wrong: tuple[str, str] | None = None) -> None:
    lib.store.db.execute("DELETE FROM labels")
    done = False
    for c in lib.clusters(samples=10**9):
        if c.id < 0:
            continue
        top = collections.Counter(p.split("/")[0] for p in c.sample_paths).most_common(1)[0][0]
        if wrong and top == wrong[0] and not done:
            lib.name_cluster(c.id, wrong[1])
            done = True
        else:
            lib.name_cluster(c.id, top)


def measure(lib, floor: float) -> dict:
    from organizer.learn import label_issues

    label_issues.SPLIT_FLOOR = floor
    paths = lib.store.primary_paths()
    labels = lib.store.labels()
    wrong = {i for i, n in labels.items() if i in paths and paths[i].split("/")[0] != n}
    listed = label_issues.find_label_issues(lib.store)
    first = listed[: max(1, len(labels) // 10)]
    hits = sum(r["image_id"] in wrong for r in first)
    screen = listed[:SCREEN]
    return {"floor": floor, "labeled": len(labels), "wrong": len(wrong), "listed": len(listed),
            "first_10pct": len(first), "precision": round(hits / len(first), 3) if first else None,
            "recall": round(hits / len(wrong), 3) if wrong else None,
            "screen_correct": sum(r["image_id"] not in wrong for r in screen), "screen": len(screen),
            "screen_top_class": collections.Counter(r["label"] for r in screen if r["image_id"] not in wrong)
            .most_common(1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--wrong", action="append", default=None, help="TRUE=NAME: a cluster named wrongly (repeatable)")
    ap.add_argument("--floor", action="append", type=float, default=None)
    ap.add_argument("--person-share", type=float, default=0.02)
    a = ap.parse_args()
    from organizer import Library

    floors = a.floor or [0.1, 0.0]
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "store"
        shutil.copytree(a.store, dest, ignore=shutil.ignore_patterns("index.lock", "*.log"))
        lib = Library(dest, create=False)
        if lib.store.current_clustering_id() is None:
            lib.cluster()
        folders = sorted({p.split("/")[0] for p in lib.store.primary_paths().values()})
        wrongs = a.wrong
        if wrongs is None:  # two slips between real classes, picked once with a fixed seed
            rng = random.Random(0)
            pair = rng.sample(folders, 4)
            wrongs = [f"{pair[0]}={pair[1]}", f"{pair[2]}={pair[3]}"]
        cases = [("by-folder", None)] + [(f"cluster {w}", tuple(w.split("=", 1))) for w in wrongs] + \
                [(f"person {a.person_share:.0%}", "person")]
        for case, wrong in cases:
            name_by_folder(lib, None if wrong == "person" else wrong)
            if wrong == "person":
                rng = random.Random(1)
                ids = sorted(lib.store.labels())
                for i in rng.sample(ids, max(1, int(a.person_share * len(ids)))):
                    now = lib.store.labels()[i]
                    lib.label_ids([i], rng.choice([f for f in folders if f != now]))
            for floor in floors:
                print(json.dumps({"store": Path(a.store).name, "case": case, **measure(lib, floor)}), flush=True)
        lib.close()


if __name__ == "__main__":
    main()
