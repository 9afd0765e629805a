#!/usr/bin/env python3
"""The prediction API under load: `organizer serve` as a real uvicorn process on 127.0.0.1,
real HTTP requests (multipart uploads of sample_data photos).

Reported: requests/s and latency p50/p95 for one client and for 8 concurrent clients, and
as the baseline, measured in the same run, the same predictions made in-process without HTTP
(decode + embed + classify, one image at a time): the ratio says what the server adds.

Usage: bench_serve.py [--requests N] [--clients C]
"""
from __future__ import annotations

import argparse
import collections
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ENV, PY, ROOT, WORK, machine, save  # noqa: E402

SAMPLE = ROOT / "sample_data"


def trained_store() -> Path:
    """sample_data indexed, clusters named after their majority class, trained (kept between runs)."""
    sys.path.insert(0, str(ROOT))
    from organizer.library import Library

    store = WORK / "serve-store"
    lib = Library(store)
    try:
        if lib.store.current_model() is None:
            lib.index(SAMPLE, backbone="efficientnet-lite0")
            lib.cluster()
            for c in lib.clusters(samples=10_000):
                if c.id >= 0:
                    lib.name_cluster(c.id, collections.Counter(p.split("/")[0] for p in c.sample_paths)
                                     .most_common(1)[0][0])
            lib.train()
    finally:
        lib.close()
    return store


def percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1)}


def load(url: str, payloads: list[bytes], clients: int, per_client: int) -> dict:
    import requests

    def client(k):
        times, failed = [], 0
        with requests.Session() as s:
            for j in range(per_client):
                data = payloads[(k * per_client + j) % len(payloads)]
                t = time.perf_counter()
                r = s.post(f"{url}/v1/predict", files={"file": ("x.jpg", data)}, timeout=120)
                times.append((time.perf_counter() - t) * 1000)
                failed += r.status_code != 200
        return times, failed

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    times = [t for ts, _ in parts for t in ts]
    return {"clients": clients, "requests": len(times), "failed": sum(f for _, f in parts),
            "requests_per_s": round(len(times) / wall, 1), **percentiles(times)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=50, help="requests per client")
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    store = trained_store()
    payloads = [p.read_bytes() for p in sorted(SAMPLE.glob("*/*.jpg"))]

    # baseline: the same work in-process, no HTTP
    from organizer.export.serve import Predictor

    predictor = Predictor(store)
    predictor.predict([(payloads[0], "warm-up")])
    direct = []
    for i in range(args.requests * 2):
        t = time.perf_counter()
        predictor.predict([(payloads[i % len(payloads)], "x")])
        direct.append((time.perf_counter() - t) * 1000)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([PY, "-m", "organizer.cli", "serve", "--store", str(store), "--port", str(port)],
                            env={**ENV, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        load(url, payloads[:8], 1, 8)  # warm-up: the server builds its runtime on the first request
        single = load(url, payloads, 1, args.requests * 2)
        many = load(url, payloads, args.clients, args.requests)
    finally:
        proc.terminate()
        proc.wait(30)
    direct_rps = 1000 / float(np.median(direct))
    result = {"machine": machine(), "direct": {"requests_per_s": round(direct_rps, 1), **percentiles(direct)},
              "one_client": single, "concurrent": many,
              "http_overhead_ratio_p50": round(single["p50_ms"] / percentiles(direct)["p50_ms"], 2)}
    print(save("bench_serve", result))
    for k in ("direct", "one_client", "concurrent"):
        print(k, result[k])
    print("one-client p50 / in-process p50:", result["http_overhead_ratio_p50"])


if __name__ == "__main__":
    main()
