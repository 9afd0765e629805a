#!/usr/bin/env python3
"""Peak memory of indexing as the library grows (target: 20,000 images <= 1.5x of 2,000).

The 20,000 images are cifar10-test twice: the originals (hard links) and a copy of each with
one pixel changed and re-encoded, so every file has its own content hash and is embedded.
They live under $ORGANIZER_BENCH_DIR (default /tmp/organizer-bench), never in ../shared.
2,000 of them form the small library. Both are indexed into fresh stores whose ONNX cache is
already there (an export would import PyTorch and measure the exporter, not indexing), while
the resident memory of the whole process tree (indexer plus decode processes) is sampled
every 50 ms.

Usage: bench_memory.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (DATASETS, WORK, fresh_store, machine, need, organizer, parse_index, run, save,  # noqa: E402
                    subset)


def make_doubled(src: Path, dest: Path) -> Path:
    """src (hard-linked) plus a one-pixel-changed JPEG copy of every image."""
    from PIL import Image

    files = sorted(src.rglob("*.jpg"))
    marker = dest / ".complete"
    if marker.exists() and marker.read_text() == str(2 * len(files)):
        return dest
    for f in files:
        rel = f.relative_to(src)
        for target in (dest / "a" / rel, dest / "b" / rel):
            target.parent.mkdir(parents=True, exist_ok=True)
        if not (dest / "a" / rel).exists():
            try:
                os.link(f, dest / "a" / rel)
            except OSError:
                (dest / "a" / rel).write_bytes(f.read_bytes())
        with Image.open(f) as im:
            im = im.convert("RGB")
            r, g, b = im.getpixel((0, 0))
            im.putpixel((0, 0), ((r + 128) % 256, g, b))
            im.save(dest / "b" / rel, "JPEG", quality=95)
    marker.write_text(str(2 * len(files)))
    return dest


def measure(folder: Path, store: Path, warm_from: Path) -> dict:
    fresh_store(store, warm_from)
    res = run(organizer("index", folder, "--store", store, "--backbone", "efficientnet-lite0"), rss=True)
    info = parse_index(res["stdout"])
    out = {"images": info["embedded"], "wall_s": res["wall_s"], "peak_rss_mib": res["peak_rss_mib"],
           "peak_rss_main_mib": res["peak_rss_main_mib"]}
    print(f"{folder}: {out}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 vs 6,000 images")
    a = ap.parse_args()
    cifar = need(DATASETS / "cifar10-test")
    small_n, big_n = (1000, 6000) if a.quick else (2000, 20000)
    src = subset(cifar, WORK / f"cifar-{big_n // 2}", big_n // 2) if big_n // 2 < 10000 else cifar
    big = make_doubled(src, WORK / f"cifar-doubled-{big_n}")
    small = subset(big, WORK / f"cifar-doubled-{big_n}-first-{small_n}", small_n, stride=big_n // small_n)
    stores = WORK / "stores" / "memory"
    seed = stores / "seed"
    if not (seed / "cache" / "onnx").exists():
        fresh_store(seed)
        run(organizer("index", subset(cifar, WORK / "cifar-50", 50), "--store", seed, "--backbone",
                      "efficientnet-lite0"))  # exports the model once
    result = {"machine": machine(), "small": measure(small, stores / "small", seed),
              "big": measure(big, stores / "big", seed)}
    result["ratio_tree"] = result["big"]["peak_rss_mib"] / result["small"]["peak_rss_mib"]
    result["ratio_main"] = result["big"]["peak_rss_main_mib"] / result["small"]["peak_rss_main_mib"]
    print(f"peak RSS {big_n} / {small_n} images: {result['ratio_tree']:.2f} (process tree), "
          f"{result['ratio_main']:.2f} (indexer process)", flush=True)
    save("memory-quick" if a.quick else "memory", result)


if __name__ == "__main__":
    main()
