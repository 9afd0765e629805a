"""Learning-loop benchmark: review rounds versus the same number of random labels.

Runs the shared simulated user (../shared/tools/simulate_user.py) twice on copies of one
indexed store: once with `organizer review` as shipped (strategy auto), once with
ORGANIZER_REVIEW_STRATEGY=random, which makes `review` return random images no person has
labeled yet. Same dataset, same naming, same number of labels; only the choice differs.

    python benchmarks/learning_loop.py /work/shared/datasets/cifar10-test --store /tmp/sim-cifar

Target (issue 6): after 3 rounds of 30, accuracy >= after-naming + 0.05 and >= random + 0.02.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def simulate(dataset: str, store: str, strategy: str, rounds: int, per_round: int, organizer: str,
             seed: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(store, copy, ignore=shutil.ignore_patterns("index.lock"))
        out = Path(tmp) / "result.json"
        env = {**os.environ, "ORGANIZER_REVIEW_STRATEGY": strategy, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, str(ROOT.parent / "shared" / "tools" / "simulate_user.py"), dataset,
                               "--organizer", organizer, "--rounds", str(rounds), "--per-round", str(per_round),
                               "--store", str(copy), "--json", str(out), "--seed", str(seed)],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"simulate_user failed ({strategy}):\n{proc.stderr[-3000:]}")
        summary = [line for line in proc.stdout.splitlines() if line.startswith("SUMMARY")]
        result = json.loads(out.read_text())
        result["summary_line"] = summary[-1] if summary else ""
        return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--store", required=True, help="an indexed store of DATASET (copied, never changed)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-round", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0, help="the simulated user's seed (which members it looks at)")
    ap.add_argument("--organizer", default=str(ROOT / ".venv" / "bin" / "organizer"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    report = {}
    for strategy in ("auto", "random"):
        r = simulate(a.dataset, a.store, strategy, a.rounds, a.per_round, a.organizer, a.seed)
        accs = [r["after_naming"]["accuracy"]] + [r[f"round_{k + 1}"]["accuracy"] for k in range(a.rounds)]
        report[strategy] = {"accuracy_per_round": accs, "summary": r["summary_line"],
                            "macro_f1_last": r[f"round_{a.rounds}"]["macro_f1"]}
        print(f"{strategy:>6}: accuracy " + " -> ".join(f"{x:.4f}" for x in accs) + f"\n        {r['summary_line']}",
              flush=True)
    auto, rand = report["auto"]["accuracy_per_round"], report["random"]["accuracy_per_round"]
    report["gain_over_naming"] = round(auto[-1] - auto[0], 4)
    report["gain_over_random"] = round(auto[-1] - rand[-1], 4)
    print(f"review vs after naming: {report['gain_over_naming']:+.4f} (target +0.05); "
          f"review vs random: {report['gain_over_random']:+.4f} (target +0.02)")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
