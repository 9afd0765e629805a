"""XMP sidecars through the CLI, read back by a real reader (ExifTool, Debian libimage-exiftool-perl)."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess

import pytest

from interop_support import trained_store, with_library_copy
from organizer.export import xmp
from support import SAMPLE, run_cli

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="ExifTool is not installed "
                                    "(apt-get install libimage-exiftool-perl)")
KEYS = ("Subject", "HierarchicalSubject", "TagsList", "Rating", "GPSLatitude", "GPSLongitude", "Title")


@pytest.fixture(scope="module")
def library(sample_store, tmp_path_factory):
    """(store, photos): a trained store over a private copy of sample_data."""
    base = tmp_path_factory.mktemp("xmp")
    return with_library_copy(trained_store(sample_store, tmp_path_factory.mktemp("trained")), base)


def exif_read(*paths) -> dict:
    """{file: {tag: value}} as ExifTool reads them (lists kept as lists)."""
    out = subprocess.run([EXIFTOOL, "-j", "-struct", "-q", *[f"-XMP:{k}" for k in KEYS], *map(str, paths)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    norm = lambda v: v if isinstance(v, list) else [v]  # noqa: E731  one keyword reads as a plain string
    return {r["SourceFile"]: {k: (norm(v) if k in KEYS[:3] else v) for k, v in r.items() if k != "SourceFile"}
            for r in json.loads(out)}


def snapshot(folder) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def labels_of(store, tmp_path) -> dict:
    run_cli("export", "--store", store, "--format", "csv", "--out", tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv", newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


@needs_exiftool
def test_mirror_tree_read_back_by_exiftool(library, tmp_path):
    store, photos = library
    before = snapshot(photos)
    out = tmp_path / "sidecars"
    printed = run_cli("export", "--store", store, "--format", "xmp", "--out", out).stdout
    assert "wrote 160 new" in printed
    rows = labels_of(store, tmp_path)
    read = exif_read(*sorted(out.rglob("*.xmp")))
    assert len(read) == 160
    for path, row in rows.items():
        tags = read[str(out / (path + ".xmp"))]
        assert tags["Subject"] == [row["label"]]
        assert tags["HierarchicalSubject"] == [f"organizer|{row['label']}"]
        assert tags["TagsList"] == [f"organizer/{row['label']}"]
    assert snapshot(photos) == before  # the library is not written
    again = run_cli("export", "--store", store, "--format", "xmp", "--out", out).stdout
    assert "160 unchanged" in again


@needs_exiftool
def test_beside_originals_merges_a_foreign_sidecar_and_remove_restores_it(library, tmp_path):
    store, photos = library
    image = photos / "sunflower" / "image_0002.jpg"
    foreign = photos / "sunflower" / "image_0002.jpg.xmp"
    subprocess.run([EXIFTOOL, "-q", "-o", str(foreign), "-XMP-xmp:Rating=4", "-XMP-exif:GPSLatitude=48.8566",
                    "-XMP-exif:GPSLongitude=2.3522", "-XMP-dc:Subject=Holiday", "-XMP-dc:Subject=sunflower",
                    "-XMP-lr:HierarchicalSubject=Places|Paris", "-XMP-dc:Title=Field", str(image)],
                   check=True, timeout=60)
    original = exif_read(foreign)[str(foreign)]
    everything = snapshot(photos)
    images_before = {k: v for k, v in everything.items() if not k.endswith(".xmp")}

    listed = run_cli("export", "--store", store, "--format", "xmp", "--beside-originals", "--dry-run").stdout
    assert snapshot(photos) == everything, "a dry run writes nothing"
    planned = [line.split("\t") for line in listed.splitlines() if "\t" in line]
    assert len(planned) == 160 and ["update", str(foreign)] in planned
    assert all(p.endswith(".xmp") and p.startswith(str(photos)) for _, p in planned)

    run_cli("export", "--store", store, "--format", "xmp", "--beside-originals")
    merged = exif_read(foreign)[str(foreign)]
    for key in ("Rating", "GPSLatitude", "GPSLongitude", "Title"):
        assert merged[key] == original[key], key
    assert merged["Subject"] == ["Holiday", "sunflower"]  # theirs kept; their 'sunflower' is not doubled
    assert merged["HierarchicalSubject"] == ["Places|Paris", "organizer|sunflower"]
    assert merged["TagsList"] == ["organizer/sunflower"]
    after = snapshot(photos)
    assert {k: v for k, v in after.items() if not k.endswith(".xmp")} == images_before, "images untouched"
    assert len([k for k in after if k.endswith(".xmp")]) == 160

    run_cli("export", "--store", store, "--format", "xmp", "--beside-originals", "--remove")
    assert exif_read(foreign)[str(foreign)] == original, "removing takes out exactly what we added"
    assert sorted(k for k in snapshot(photos) if k.endswith(".xmp")) == ["sunflower/image_0002.jpg.xmp"]
    assert {k: v for k, v in snapshot(photos).items() if not k.endswith(".xmp")} == images_before


def test_stem_naming_prefix_and_confidence(library, tmp_path):
    store, _ = library
    rows = labels_of(store, tmp_path)
    cut = max(float(r["confidence"]) for r in rows.values())  # the surest pass, the others do not
    out = tmp_path / "lr"
    run_cli("export", "--store", store, "--format", "xmp", "--out", out, "--naming", "stem", "--prefix", "",
            "--what", "predicted", "--min-confidence", cut)
    written = {p.relative_to(out).as_posix() for p in out.rglob("*.xmp")}
    expected = {p[:-len(".jpg")] + ".xmp" for p, r in rows.items() if float(r["confidence"]) >= cut}
    assert written == expected and 0 < len(written) < 160
    some = sorted(written)[0]
    kw = xmp.keywords((out / some).read_bytes())
    pred = rows[some[:-len(".xmp")] + ".jpg"]["predicted"]
    assert kw == {"dc:subject": [pred], "lr:hierarchicalSubject": [pred], "digiKam:TagsList": [pred]}


def test_bad_requests_are_refused(library, tmp_path):
    store, photos = library
    inside = run_cli("export", "--store", store, "--format", "xmp", "--out", photos / "x", check=False)
    assert inside.returncode == 2 and "inside the image folder" in inside.stderr
    both = run_cli("export", "--store", store, "--format", "xmp", check=False)
    assert both.returncode == 2 and "--beside-originals" in both.stderr
    bad = run_cli("export", "--store", store, "--format", "xmp", "--out", tmp_path / "o", "--what", "colours",
                  check=False)
    assert bad.returncode == 2 and "--what" in bad.stderr
    assert not (tmp_path / "o").exists()


def test_unreadable_sidecar_is_left_alone(library, tmp_path):
    store, photos = library
    out = tmp_path / "mirror"
    target = out / "watch" / "image_0001.jpg.xmp"
    target.parent.mkdir(parents=True)
    junk = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    target.write_bytes(junk)
    result = run_cli("export", "--store", store, "--format", "xmp", "--out", out)
    assert "1 skipped" in result.stdout and "DTD" in result.stderr
    assert target.read_bytes() == junk


def test_merge_is_idempotent_and_reversible():
    foreign = (b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
               b"<rdf:Description rdf:about='' xmlns:xmp='http://ns.adobe.com/xap/1.0/' xmp:Rating='3'>"
               b"<!-- kept --></rdf:Description></rdf:RDF></x:xmpmeta>")
    once, has_foreign = xmp.merge(foreign, {"sunflower", "field|summer"})
    assert has_foreign
    assert xmp.merge(once, {"sunflower", "field|summer"})[0] == once
    assert xmp.keywords(once)["lr:hierarchicalSubject"] == ["organizer|field|summer", "organizer|sunflower"]
    back, _ = xmp.merge(once, set())
    assert b"xmp:Rating=\"3\"" in back and b"<!-- kept -->" in back
    assert xmp.keywords(back) == {"dc:subject": [], "lr:hierarchicalSubject": [], "digiKam:TagsList": []}
    assert SAMPLE.exists()
