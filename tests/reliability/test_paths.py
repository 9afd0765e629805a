"""8. Paths: symlink loops terminate; links out of the folder are followed only with
--follow-links; broken links are skipped; emoji, NFD, leading '-', 255-byte names and paths near
PATH_MAX round-trip unchanged through index -> export -> label; a name that is not UTF-8 is
recorded as an error that asks for a rename."""
from __future__ import annotations

import csv
import os
import shutil
import unicodedata

from support import SAMPLE, run_cli

from .helpers import check_consistent, summary

PHOTOS = sorted(SAMPLE.rglob("*.jpg"))


def put(path, i):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copy(PHOTOS[i * 7], path)


def test_odd_names_round_trip(tmp_path, empty_store):
    folder = tmp_path / "lib"
    folder.mkdir()
    nfd = unicodedata.normalize("NFD", "café crème.jpg")
    assert nfd != unicodedata.normalize("NFC", nfd)
    deep = "/".join(["d" * 200] * 18)  # with the 255-byte name: an absolute path of ~4000 bytes
    names = ["🐱 cat 🎉.jpg", nfd, "-dash.jpg", "--double.jpg", "sp ace/ new\tline.jpg",
             "x" * 251 + ".jpg", "é" * 125 + ".jpg",                     # 255 bytes, 1- and 2-byte characters
             f"{deep}/" + "y" * 251 + ".jpg"]
    for i, name in enumerate(names):
        put(os.path.join(folder, name), i)
    assert len(os.fsencode(os.path.join(folder, names[-1]))) > 3800
    out = run_cli("index", folder, "--store", empty_store, "--backbone", "efficientnet-lite0")
    assert summary(out.stdout)["embedded"] == len(names)

    export = tmp_path / "export.csv"
    run_cli("export", "--format", "csv", "--out", export, "--store", empty_store)
    with open(export, newline="", encoding="utf-8") as f:
        exported = [row["path"] for row in csv.DictReader(f)]
    assert sorted(exported) == sorted(names)  # byte for byte: NFD stays NFD
    for name in names:  # '--' ends the options, so a name starting with '-' is a path
        out = run_cli("label", "--as", "odd", "--store", empty_store, "--", name)
        assert "labeled 1 images" in out.stdout
    assert len(check_consistent(empty_store)["files"]) == len(names)


def test_name_that_is_not_utf8_is_an_error_that_asks_for_a_rename(tmp_path, empty_store):
    folder = tmp_path / "lib"
    folder.mkdir()
    put(folder / "good.jpg", 0)
    bad = os.path.join(os.fsencode(folder), b"caf\xe9.jpg")  # Latin-1 bytes, as an old camera wrote them
    with open(bad, "wb") as f:
        f.write(PHOTOS[3].read_bytes())
    out = run_cli("index", folder, "--store", empty_store, "--backbone", "efficientnet-lite0")
    counts = summary(out.stdout)
    assert counts["embedded"] == 1 and counts["failed"] == 1
    errors = check_consistent(empty_store)["errors"]
    assert list(errors) == ["caf\\xe9.jpg"] and "rename it" in errors["caf\\xe9.jpg"]
    assert "caf\\xe9.jpg" in out.stderr and "Traceback" not in out.stderr
    status = run_cli("status", "--errors", "--store", empty_store).stdout
    assert "caf\\xe9.jpg: " in status
    again = run_cli("index", folder, "--store", empty_store)  # recorded once, not retried
    assert summary(again.stdout) == {**counts, "embedded": 0, "unchanged": 2}


def test_links(tmp_path, sample_store):
    from .helpers import new_store

    folder, outside = tmp_path / "lib", tmp_path / "outside"
    put(folder / "real" / "a.jpg", 0)
    put(folder / "real" / "b.jpg", 1)
    put(outside / "c.jpg", 2)
    put(outside / "sub" / "d.jpg", 3)
    os.symlink(folder, folder / "real" / "loop")          # a loop back to the top
    os.symlink(folder / "real", folder / "again")         # a second way into a real folder
    os.symlink(outside, folder / "out")                    # a folder outside
    os.symlink(outside / "c.jpg", folder / "c-link.jpg")   # a file outside
    os.symlink(tmp_path / "nowhere.jpg", folder / "broken.jpg")
    os.symlink(folder / "broken.jpg", folder / "broken2.jpg")  # a link to a broken link

    plain = new_store(sample_store, tmp_path / "plain")
    out = run_cli("index", folder, "--store", plain, "--backbone", "efficientnet-lite0", timeout=120)
    assert sorted(check_consistent(plain)["files"]) == ["real/a.jpg", "real/b.jpg"]
    assert summary(out.stdout)["failed"] == 0

    followed = new_store(sample_store, tmp_path / "followed")
    out = run_cli("index", folder, "--store", followed, "--backbone", "efficientnet-lite0", "--follow-links",
                  timeout=120)
    files = check_consistent(followed)["files"]
    # each folder entered once (real paths win), the loop ends, links outside are followed when asked
    assert sorted(files) == ["c-link.jpg", "out/c.jpg", "out/sub/d.jpg", "real/a.jpg", "real/b.jpg"]
    assert files["c-link.jpg"] == files["out/c.jpg"]
    assert summary(out.stdout)["failed"] == 0 and summary(out.stdout)["reused"] == 1
