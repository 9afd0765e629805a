"""Label-error benchmark: name one cluster wrongly on purpose; where do its images rank?

Target (issue 6): at least 80% of the wrongly labeled images rank in the first 10% of the
flagged list. The list here is the full ranking of every labeled image by suspicion (what
`organizer issues --all` prints); `wrong_in_top_n_wrong` also says how many of the N wrong images
are among the first N, a stricter view. Works on a COPY of an indexed and clustered store (never modifies the source):

    python benchmarks/label_issues.py --store /tmp/sim-caltech2 [--wrong sunflower=bonsai ...]

Each --wrong TRUE=NAME names the cluster whose majority is TRUE as NAME (an existing class:
the "cats named dog" case; a new name: the "named a class of its own" case). Clusters are named
after their majority class first, as a careful person would.
"""
from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_case(source: Path, true_cls: str, wrong: str) -> dict:
    from organizer import Library
    from organizer.learn import label_issues

    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "store"
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("index.lock"))
        lib = Library(dest, create=False)
        lib.store.db.execute("DELETE FROM labels")
        infos = [c for c in lib.clusters(samples=10**9) if c.id >= 0]
        target = None
        for c in infos:
            top = collections.Counter(p.split("/")[0] for p in c.sample_paths).most_common(1)[0][0]
            if top == true_cls and target is None:
                target = c
                lib.name_cluster(c.id, wrong)
            else:
                lib.name_cluster(c.id, top)
        if target is None:
            raise SystemExit(f"no cluster has {true_cls} as its majority")
        wrong_ids = {i for i, p in zip(target.sample_ids, target.sample_paths) if p.split("/")[0] != wrong}
        t = time.time()
        flagged = label_issues.find_label_issues(lib.store, everything=True)
        n_flagged = sum(r['score'] > 0 for r in flagged)
        seconds = time.time() - t
        lib.close()
    ranks = [k for k, r in enumerate(flagged) if r["image_id"] in wrong_ids]
    top = max(1, len(flagged) // 10)
    hit = sum(1 for k in ranks if k < top)
    return {"case": f"{true_cls} cluster named {wrong!r}", "wrong_images": len(wrong_ids), "ranked": len(flagged), "score_above_0": n_flagged,
            "top_10pct": top, "wrong_in_top_10pct": hit, "share": round(hit / max(1, len(wrong_ids)), 4),
            "wrong_in_top_n_wrong": sum(1 for k in ranks if k < len(wrong_ids)), "seconds": round(seconds, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="/tmp/sim-caltech2")
    ap.add_argument("--wrong", action="append", default=None, help="TRUE=NAME (repeatable)")
    a = ap.parse_args()
    cases = a.wrong or ["sunflower=bonsai", "ketch=airplanes", "grand_piano=watch", "sunflower=daisy"]
    results = [run_case(Path(a.store), *c.split("=", 1)) for c in cases]
    for r in results:
        print(json.dumps(r))
    print("SUMMARY " + " ".join(f"{r['case'].split()[0]}->{r['case'].split()[-1]}={r['share']}" for r in results))


if __name__ == "__main__":
    main()
