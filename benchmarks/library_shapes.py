"""The whole loop on every shape of library: one table from the shared simulated user.

    python benchmarks/library_shapes.py [--shapes caltech8,small34,cifar,longtail,powerlaw,small34x10]
        [--seeds 0,1] [--rounds 2] [--per-round 30] [--work /tmp/organizer-shapes] [--json OUT]

Shapes (folders are built under --work, never in ../shared):
  caltech8    ../shared/datasets/caltech101-8: few big classes (85-800 photos)
  small34     ../shared/datasets/caltech-small34: 34 classes of 31-49 + 100 clutter photos
  cifar       ../shared/datasets/cifar10-test: 10 x 1,000 weakly separated 32x32 photos
  longtail    caltech101-8 and caltech-small34 together: 42 classes from 800 down to 31, + clutter
  powerlaw    a sample of the long tail whose class sizes follow a power law (rank r gets
              ~ 400 / r^1.1 photos, at least 8): groups of 400 beside groups of 8
  small20     caltech-small34 cut to 20 photos a class (+ 40 clutter): 34 groups of 20
  tiny12      the same at 12 photos a class: groups just above the smallest group (10)
  huge+tiny12 caltech101-8 whole beside caltech-small34 at 12 a class (+ 40 clutter): a few groups
              of 100-800 beside 34 of 12, the smallest next to the biggest in one library
  small34x10  caltech-small34 with every photo repeated 10 times, each copy slightly cropped,
              brightened or darkened and re-encoded: the same structure at 10x the images
  caltech8x10 the same for caltech101-8 (24,630 photos)

Each shape is indexed once into a store that is then copied for each user seed, so the runs
differ only in the simulated person. Prints a row per (shape, seed) and the SUMMARY lines.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
SIM = ROOT.parent / "shared" / "tools" / "simulate_user.py"
NOISE = "BACKGROUND_Google"


def _copy_classes(dest: Path, sources: list[Path], sizes: dict[str, int] | None = None, seed: int = 0):
    rng = random.Random(seed)
    for src in sources:
        for cls in sorted(p for p in src.iterdir() if p.is_dir()):
            files = sorted(cls.iterdir())
            if sizes is not None:
                if cls.name not in sizes:
                    continue
                files = rng.sample(files, min(len(files), sizes[cls.name]))
            (dest / cls.name).mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copyfile(f, dest / cls.name / f.name)


def _perturbed_copies(src: Path, dest: Path, times: int, seed: int = 0):
    """Each photo `times` times: small random crop (<= 8% a side), brightness x0.9-1.1, JPEG q 80-95."""
    from PIL import Image, ImageEnhance

    rng = random.Random(seed)
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (dest / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir()):
            with Image.open(f) as im:
                im = im.convert("RGB")
                w, h = im.size
                for k in range(times):
                    box = (int(w * rng.uniform(0, .08)), int(h * rng.uniform(0, .08)),
                           int(w * (1 - rng.uniform(0, .08))), int(h * (1 - rng.uniform(0, .08))))
                    out = ImageEnhance.Brightness(im.crop(box)).enhance(rng.uniform(0.9, 1.1))
                    out.save(dest / cls.name / f"{f.stem}_{k}.jpg", quality=rng.randint(80, 95))


def build(shape: str, work: Path) -> tuple[Path, str | None, int]:
    """(folder, noise class or None, number of real classes)."""
    c8, s34, cifar = DATA / "caltech101-8", DATA / "caltech-small34", DATA / "cifar10-test"
    if shape == "caltech8":
        return c8, None, 8
    if shape == "small34":
        return s34, NOISE, 34
    if shape == "cifar":
        return cifar, None, 10
    folder = work / shape
    done = folder / ".built"
    if shape == "longtail":
        if not done.exists():
            _copy_classes(folder, [c8, s34])
        n_classes = 42
    elif shape == "powerlaw":
        classes = sorted({p.name for src in (c8, s34) for p in src.iterdir() if p.is_dir()} - {NOISE})
        rng = random.Random(0)
        rng.shuffle(classes)
        sizes = {c: max(8, round(400 / (r + 1) ** 1.1)) for r, c in enumerate(classes)}
        sizes[NOISE] = 60
        if not done.exists():
            _copy_classes(folder, [c8, s34], sizes)
        n_classes = len(classes)
    elif shape in ("small20", "tiny12"):
        per = 20 if shape == "small20" else 12
        sizes = {p.name: per for p in s34.iterdir() if p.is_dir()}
        sizes[NOISE] = 40
        if not done.exists():
            _copy_classes(folder, [s34], sizes)
        n_classes = 34
    elif shape == "huge+tiny12":
        if not done.exists():
            _copy_classes(folder, [c8])
            _copy_classes(folder, [s34], {**{p.name: 12 for p in s34.iterdir() if p.is_dir()}, NOISE: 40})
        n_classes = 42
    elif shape in ("small34x10", "caltech8x10"):
        if not done.exists():
            _perturbed_copies(s34 if shape == "small34x10" else c8, folder, 10)
        done.touch()
        return folder, (NOISE if shape == "small34x10" else None), (34 if shape == "small34x10" else 8)
    else:
        raise SystemExit(f"unknown shape {shape}")
    done.touch()
    return folder, NOISE, n_classes


def simulate(folder: Path, store: Path, noise: str | None, seed: int, rounds: int, per_round: int,
             organizer: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(store, copy, ignore=shutil.ignore_patterns("index.lock"))
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(SIM), str(folder), "--organizer", organizer, "--rounds", str(rounds),
               "--per-round", str(per_round), "--store", str(copy), "--json", str(out), "--seed", str(seed)]
        if noise:
            cmd += ["--noise-class", noise]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if proc.returncode != 0:
            raise SystemExit(f"simulate_user failed on {folder}:\n{proc.stderr[-3000:]}")
        result = json.loads(out.read_text())
        result["summary_line"] = next((x for x in proc.stdout.splitlines()[::-1] if x.startswith("SUMMARY")), "")
        return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="caltech8,small34,cifar,longtail,powerlaw,small34x10")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--per-round", type=int, default=30)
    ap.add_argument("--work", default=os.environ.get("ORGANIZER_SHAPES_DIR", "/tmp/organizer-shapes"))
    ap.add_argument("--organizer", default=str(ROOT / ".venv" / "bin" / "organizer"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    head = (f"{'shape':12} {'seed':>4} {'images':>7} {'classes':>7} {'groups':>6} {'noise':>6} {'nmi':>6} "
            f"{'actions':>7} {'acc named':>9} {'acc +review':>11}")
    print(head, flush=True)
    for shape in a.shapes.split(","):
        folder, noise, n_classes = build(shape, work)
        store = work / f"store-{shape}"
        if not (store / "organizer.db").exists():
            subprocess.run(shlex.split(a.organizer) + ["index", str(folder), "--store", str(store)], check=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True)
        for seed in map(int, a.seeds.split(",")):
            r = simulate(folder, store, noise, seed, a.rounds, a.per_round, a.organizer)
            last = r.get(f"round_{a.rounds}", r["after_naming"]) if a.rounds else r["after_naming"]
            row = {"shape": shape, "seed": seed, "images": r["images_exported"], "classes": n_classes,
                   "groups": r["clusters"], "noise": r["noise_fraction"], "nmi": r["nmi"],
                   "actions": r["naming_actions"], "acc_named": r["after_naming"]["accuracy"],
                   "acc_review": last.get("accuracy"), "summary": r["summary_line"]}
            rows.append(row)
            print(f"{shape:12} {seed:>4} {row['images']:>7} {n_classes:>7} {row['groups']:>6} {row['noise']:>6.3f} "
                  f"{row['nmi']:>6.3f} {row['actions']:>7} {row['acc_named']:>9.4f} {row['acc_review']:>11.4f}",
                  flush=True)
    print()
    for row in rows:
        print(f"{row['shape']} seed {row['seed']}: {row['summary']}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
