"""16. Tiny and degenerate libraries: clear messages, no exceptions, all-noise handled."""
from __future__ import annotations

import shutil

import pytest

from support import SAMPLE, run_cli


def make_folder(tmp_path, files):
    folder = tmp_path / "lib"
    folder.mkdir()
    for i, src in enumerate(files):
        shutil.copy(src, folder / f"img_{i:03d}.jpg")
    return folder


def no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("count", [1, 2, 5])
def test_few_images(tmp_path, count):
    files = sorted(SAMPLE.rglob("*.jpg"))[::20][:count]
    folder = make_folder(tmp_path, files)
    store = tmp_path / "s"
    no_traceback(run_cli("index", folder, "--store", store, "--backbone", "efficientnet-lite0"))
    proc = run_cli("cluster", "--store", store)
    no_traceback(proc)
    listing = run_cli("clusters", "--store", store)
    no_traceback(listing)
    proc = run_cli("train", "--store", store, check=False)
    assert proc.returncode != 0 and "at least two classes" in proc.stderr
    no_traceback(proc)


def test_zero_images(tmp_path):
    (tmp_path / "lib").mkdir()
    proc = run_cli("index", tmp_path / "lib", "--store", tmp_path / "s", check=False)
    assert proc.returncode != 0 and "no images found" in proc.stderr
    no_traceback(proc)


def test_identical_images(tmp_path):
    src = SAMPLE / "watch" / "image_0001.jpg"
    folder = make_folder(tmp_path, [src] * 12)
    store = tmp_path / "s"
    out = run_cli("index", folder, "--store", store, "--backbone", "efficientnet-lite0").stdout
    assert "1 embedded" in out  # one image, twelve files
    no_traceback(run_cli("cluster", "--store", store))
    proc = run_cli("export", "--store", store, "--format", "csv", "--out", tmp_path / "e.csv")
    assert len((tmp_path / "e.csv").read_text().splitlines()) == 13


def test_single_class(tmp_path):
    folder = make_folder(tmp_path, sorted((SAMPLE / "sunflower").glob("*.jpg")))
    store = tmp_path / "s"
    run_cli("index", folder, "--store", store, "--backbone", "efficientnet-lite0")
    no_traceback(run_cli("cluster", "--store", store))
    run_cli("label", "img_000.jpg", "img_001.jpg", "--as", "sunflower", "--store", store)
    proc = run_cli("train", "--store", store, check=False)
    assert proc.returncode != 0 and "at least two classes" in proc.stderr
