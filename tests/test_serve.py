"""`organizer serve`: a real uvicorn process on 127.0.0.1 (a free port), real HTTP requests."""
from __future__ import annotations

import base64
import io
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'organizer[serve]')")
requests = pytest.importorskip("requests")

from interop_support import child_env, copy_store, free_port, trained_store  # noqa: E402
from support import SAMPLE, run_cli, truth  # noqa: E402

TOKEN = "test-token-7f3a"
MAX_BYTES = 300_000
MAX_PIXELS = 2_000_000
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(sample_store, tmp_path_factory):
    from organizer.library import Library

    store = copy_store(trained_store(sample_store, tmp_path_factory.mktemp("trained")),
                       tmp_path_factory.mktemp("serve") / "store")
    lib = Library(store, create=False)
    try:
        lib.train(force=True)  # a second version, so a test can switch between two
    finally:
        lib.close()
    port = free_port()
    log = open(tmp_path_factory.mktemp("serve-log") / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "organizer.cli", "serve", "--store", str(store), "--host",
                             "127.0.0.1", "--port", str(port), "--token", TOKEN, "--max-bytes", str(MAX_BYTES),
                             "--max-pixels", str(MAX_PIXELS)], stdout=log, stderr=subprocess.STDOUT, env=child_env())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            proc.kill()
            pytest.fail(f"the server did not start:\n{log.read()}")
        time.sleep(0.3)
    yield url, store
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def images(n=None):
    files = sorted(SAMPLE.glob("*/*.jpg"))
    return files if n is None else files[::max(1, len(files) // n)][:n]


def png(width, height) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 180, 20)).save(buf, "PNG")
    return buf.getvalue()


def test_predict_upload_base64_and_batch(server):
    url, _ = server
    f = SAMPLE / "sunflower" / "image_0001.jpg"
    one = requests.post(f"{url}/v1/predict", files={"file": f.open("rb")}, headers=AUTH, timeout=60).json()
    assert one["labelName"] == "sunflower" and 0 < one["confidence"] <= 1
    assert one["top"][0] == {"labelName": "sunflower", "confidence": one["confidence"]} and one["model"] == 2
    b64 = requests.post(f"{url}/v1/predict", json={"image": base64.b64encode(f.read_bytes()).decode()},
                        headers=AUTH, timeout=60).json()
    assert b64["labelName"] == "sunflower" and abs(b64["confidence"] - one["confidence"]) < 1e-6
    picks = images(8)
    batch = requests.post(f"{url}/v1/predict/batch", files=[("files", p.open("rb")) for p in picks],
                          headers=AUTH, timeout=60).json()["results"]
    assert [r["labelName"] for r in batch] == [truth(p.relative_to(SAMPLE).as_posix()) for p in picks]
    labels = requests.get(f"{url}/v1/labels", headers=AUTH, timeout=10).json()
    assert len(labels["labels"]) == 8 and labels["model"] == 2
    assert requests.get(f"{url}/docs", timeout=10).status_code == 200
    assert "/v1/predict/batch" in requests.get(f"{url}/openapi.json", timeout=10).json()["paths"]


def test_token_limits_and_bad_input(server, tmp_path):
    url, _ = server
    jpg = (SAMPLE / "watch" / "image_0001.jpg").read_bytes()
    post = lambda **kw: requests.post(f"{url}/v1/predict", timeout=60, **kw)  # noqa: E731
    assert post(files={"file": jpg}).status_code == 401
    assert post(files={"file": jpg}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert requests.get(f"{url}/v1/model", timeout=10).status_code == 401
    cases = {
        "text": (post(files={"file": ("notes.txt", b"hello, not an image")}, headers=AUTH), 415),
        "truncated": (post(files={"file": ("cut.jpg", jpg[: len(jpg) // 3])}, headers=AUTH), 400),
        "too many bytes": (post(files={"file": ("big.jpg", jpg * 40)}, headers=AUTH), 413),
        "too many pixels": (post(files={"file": ("huge.png", png(2000, 1500))}, headers=AUTH), 413),
        "bad base64": (post(json={"image": "%%%"}, headers=AUTH), 400),
        "a URL": (post(json={"url": "http://example.com/a.jpg"}, headers=AUTH), 400),
        "not JSON": (post(data=b"{", headers={**AUTH, "Content-Type": "application/json"}), 400),
        "other type": (post(data=b"x", headers={**AUTH, "Content-Type": "text/csv"}), 415),
    }
    for name, (response, status) in cases.items():
        assert response.status_code == status, (name, response.status_code, response.text)
        assert response.json()["error"], name
    assert post(files={"file": jpg}, headers=AUTH).status_code == 200  # still serving after all that


def test_concurrent_clients(server):
    """8 clients x 50 requests against the one server process: every answer right, nothing failing."""
    url, _ = server
    files = images(40)
    payloads = [(p.read_bytes(), truth(p.relative_to(SAMPLE).as_posix())) for p in files]

    def client(k):
        answers = []
        with requests.Session() as s:
            for j in range(50):
                data, want = payloads[(k * 50 + j) % len(payloads)]
                r = s.post(f"{url}/v1/predict", files={"file": ("x.jpg", data)}, headers=AUTH, timeout=120)
                answers.append((r.status_code, r.json().get("labelName"), want))
        return answers

    with ThreadPoolExecutor(8) as pool:
        results = [a for part in pool.map(client, range(8)) for a in part]
    assert len(results) == 400
    assert all(status == 200 for status, _, _ in results)
    assert sum(got == want for _, got, want in results) >= 0.95 * 400


def test_new_current_model_without_restart(server):
    url, store = server
    assert requests.get(f"{url}/v1/model", headers=AUTH, timeout=10).json()["id"] == 2
    run_cli("models", "--use", "1", "--store", store)
    assert requests.get(f"{url}/v1/model", headers=AUTH, timeout=10).json()["id"] == 1
    f = SAMPLE / "bonsai" / "image_0001.jpg"
    r = requests.post(f"{url}/v1/predict", files={"file": f.open("rb")}, headers=AUTH, timeout=60).json()
    assert r["model"] == 1 and r["labelName"] == "bonsai"
    run_cli("models", "--use", "2", "--store", store)
    assert requests.get(f"{url}/health", timeout=10).json()["model"] == 2


def test_other_addresses_need_a_token(sample_store, tmp_path):
    """Refused before anything is bound. The address is TEST-NET-1 (RFC 5737), on no interface here, so
    even a broken check could not listen anywhere but 127.0.0.1."""
    r = run_cli("serve", "--store", sample_store, "--host", "192.0.2.1", "--port", str(free_port()), check=False,
                timeout=60)
    assert r.returncode == 2 and "--token" in r.stderr
    assert Path(sample_store).exists()
