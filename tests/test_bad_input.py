"""Bad input: clear one-line errors and non-zero exits, or records-and-continues for bad files."""
from __future__ import annotations

import shutil

from support import SAMPLE, run_cli


def test_missing_folder(tmp_path):
    proc = run_cli("index", tmp_path / "nope", "--store", tmp_path / "s", check=False)
    assert proc.returncode != 0
    assert "folder not found" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    proc = run_cli("index", tmp_path / "empty", "--store", tmp_path / "s", check=False)
    assert proc.returncode != 0 and "no images found" in proc.stderr


def test_single_image_then_cluster_and_train(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(SAMPLE / "watch" / "image_0001.jpg", folder)
    proc = run_cli("index", folder, "--store", tmp_path / "s", "--backbone", "efficientnet-lite0")
    assert "fewer than two images" in proc.stderr
    run_cli("cluster", "--store", tmp_path / "s")  # no exception: one image is simply unsorted
    proc = run_cli("train", "--store", tmp_path / "s", check=False)
    assert proc.returncode != 0 and "at least two classes" in proc.stderr


def test_corrupt_files_are_recorded_and_skipped(photo_folder, tmp_path):
    good = sorted(photo_folder.rglob("*.jpg"))[0].read_bytes()
    bad = photo_folder / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "half.jpg").write_bytes(good[: len(good) // 2])
    (bad / "tenth.jpg").write_bytes(good[: len(good) // 10])
    (bad / "random.jpg").write_bytes(bytes(range(256)) * 40)
    (bad / "text.png").write_text("this is not a picture\n" * 20)
    store = tmp_path / "s"
    proc = run_cli("index", photo_folder, "--store", store, "--backbone", "efficientnet-lite0")
    assert "12 embedded" in proc.stdout and "5 failed" in proc.stdout
    for name in ("zero.jpg", "half.jpg", "random.jpg", "text.png"):
        assert f"bad/{name}" in proc.stderr
    status = run_cli("status", "--store", store, "--errors").stdout
    assert "bad/text.png" in status
    # unchanged bad files are not retried, and still counted
    again = run_cli("index", photo_folder, "--store", store)
    assert "0 embedded" in again.stdout and "5 failed" in again.stdout


def test_unknown_cluster_and_bad_names(store_copy):
    proc = run_cli("name", "999", "x", "--store", store_copy, check=False)
    assert proc.returncode != 0 and "unknown cluster id 999" in proc.stderr
    proc = run_cli("name", "0", "   ", "--store", store_copy, check=False)
    assert proc.returncode != 0 and "empty" in proc.stderr
    proc = run_cli("label", "no/such.jpg", "--as", "x", "--store", store_copy, check=False)
    assert proc.returncode != 0 and "not in the library" in proc.stderr


def test_train_needs_two_classes(store_copy):
    proc = run_cli("train", "--store", store_copy, check=False)
    assert proc.returncode != 0 and "at least two classes" in proc.stderr
    run_cli("name", "0", "things", "--store", store_copy)
    proc = run_cli("train", "--store", store_copy, check=False)
    assert proc.returncode != 0 and "1 class" in proc.stderr


def test_no_store(tmp_path):
    proc = run_cli("clusters", "--store", tmp_path / "none", check=False)
    assert proc.returncode != 0 and "no store" in proc.stderr
    assert not (tmp_path / "none").exists()


def test_store_inside_image_folder_is_refused(photo_folder):
    proc = run_cli("index", photo_folder, "--store", photo_folder / "store", check=False)
    assert proc.returncode != 0 and "never writes there" in proc.stderr


def test_export_into_image_folder_is_refused(store_copy):
    proc = run_cli("export", "--store", store_copy, "--format", "csv", "--out", SAMPLE / "x.csv", check=False)
    assert proc.returncode != 0 and not (SAMPLE / "x.csv").exists()
