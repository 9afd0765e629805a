"""Duplicate finding through the CLI on real photos with planted exact and edited copies."""
from __future__ import annotations

import csv
import json
import shutil

import pytest
from PIL import Image

from support import SAMPLE, run_cli


def cli(*args, check=True):
    return run_cli(*args, check=check)


def edited(src, dest, *, crop=0.0, scale=1.0, quality=40):
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        im = im.crop((round(w * crop), round(h * crop * 0.5), w - round(w * crop * 0.6), h - round(h * crop)))
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        im.save(dest, "JPEG", quality=quality)


def recoloured(src, dest):
    """The same photograph with its centre (30% per side) recoloured, red and blue swapped: a
    catalogue colour variant, not a copy."""
    import numpy as np

    with Image.open(src) as im:
        a = np.asarray(im.convert("RGB")).copy()
    h, w, _ = a.shape
    y0, y1, x0, x1 = int(h * .35), int(h * .65), int(w * .35), int(w * .65)
    a[y0:y1, x0:x1] = a[y0:y1, x0:x1][..., ::-1]
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(dest, "JPEG", quality=95)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """12 photos (4 classes x 3), one exact copy, one re-encoded+resized copy, one cropped copy, one
    recoloured variant; indexed."""
    base = tmp_path_factory.mktemp("dups")
    photos = base / "photos"
    for cls in ("airplanes", "Motorbikes", "watch", "sunflower"):
        (photos / cls).mkdir(parents=True)
        for src in sorted((SAMPLE / cls).glob("*.jpg"))[:3]:
            shutil.copy2(src, photos / cls / src.name)
    a, b, c = (sorted((photos / cls).glob("*.jpg"))[0] for cls in ("airplanes", "watch", "sunflower"))
    (photos / "backup" / "old").mkdir(parents=True)
    shutil.copyfile(a, photos / "backup" / "old" / a.name)  # the longer path: not the one to keep
    edited(b, photos / "edited" / "small.jpg", scale=0.6, quality=30)
    edited(c, photos / "edited" / "cropped.jpg", crop=0.05, quality=70)
    bike = sorted((photos / "Motorbikes").glob("*.jpg"))[0]
    recoloured(bike, photos / "variants" / "recoloured.jpg")
    store = base / "store"
    cli("index", photos, "--store", store, "--backbone", "efficientnet-lite0")
    rel = lambda p: p.relative_to(photos).as_posix()  # noqa: E731
    return {"photos": photos, "store": store, "exact": {rel(a), f"backup/old/{a.name}"},
            "near": [{rel(b), "edited/small.jpg"}, {rel(c), "edited/cropped.jpg"}], "originals": (rel(b), rel(c)),
            "variant": {rel(bike), "variants/recoloured.jpg"}}


def groups_of(store, *extra):
    return json.loads(cli("duplicates", "--store", store, "--json", *extra).stdout)


def test_exact_and_near_groups(library):
    groups = groups_of(library["store"])
    sets = [{m["path"] for m in g["members"]} for g in groups]
    assert library["exact"] in sets
    for near in library["near"]:
        assert near in sets, (near, sets)
    assert len(groups) == 3, "nothing else in 12 different photos (and one recoloured variant) is a duplicate"
    by_paths = {frozenset(s): g for s, g in zip(sets, groups)}
    assert by_paths[frozenset(library["exact"])]["kind"] == "exact"
    for near, original in zip(library["near"], library["originals"]):
        g = by_paths[frozenset(near)]
        assert g["kind"] == "near" and g["best"] == original  # the larger, uncropped picture is kept
        copy = next(m for m in g["members"] if not m["best"])
        assert copy["match"] >= 0.95 and copy["similarity"] < 1.0 and copy["colour_change"] <= 20
    # An embedding threshold of 0 leaves only byte-identical files.
    assert [{m["path"] for m in g["members"]} for g in groups_of(library["store"], "--threshold", "0")] \
        == [library["exact"]]


def test_export_and_refusals(library, tmp_path):
    out_csv, out_json = tmp_path / "d.csv", tmp_path / "d.json"
    cli("duplicates", "--store", library["store"], "--out", out_csv)
    cli("duplicates", "--store", library["store"], "--out", out_json)
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 6 and sum(r["best"] == "1" for r in rows) == 3
    assert len(json.loads(out_json.read_text())) == 3
    before = sorted(p for p in library["photos"].rglob("*"))
    for flag, target in (("--out", library["photos"] / "d.csv"), ("--move-to", library["photos"] / "dups"),
                         ("--out", tmp_path / "d.txt")):
        bad = cli("duplicates", "--store", library["store"], flag, target, check=False)
        assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert sorted(p for p in library["photos"].rglob("*")) == before  # nothing written into the library


def test_move_copies(library, tmp_path):
    # A private copy of folder and store, so the other tests keep theirs.
    photos, store = tmp_path / "photos", tmp_path / "store"
    shutil.copytree(library["photos"], photos)
    shutil.copytree(library["store"], store)
    from organizer.store import Store

    with Store(store, create=False) as s:
        s.set_meta("library_root", str(photos))
    exact_copy = next(p for p in library["exact"] if p.startswith("backup/"))
    cli("label", exact_copy, "edited/small.jpg", "--as", "keepme", "--store", store)
    dest = tmp_path / "moved"
    blocker = dest / "edited" / "cropped.jpg"  # already there: must not be overwritten
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"not an image")
    n_before = sum(1 for p in photos.rglob("*") if p.is_file())
    out = cli("duplicates", "--store", store, "--move-to", dest)
    assert "moved 2 copies" in out.stdout and "already exists" in out.stderr
    assert (dest / exact_copy).is_file() and (dest / "edited" / "small.jpg").is_file()
    assert blocker.read_bytes() == b"not an image" and (photos / "edited" / "cropped.jpg").is_file()
    assert not (photos / exact_copy).exists() and not (photos / "edited" / "small.jpg").exists()
    assert sum(1 for p in photos.rglob("*") if p.is_file()) == n_before - 2
    for original in library["originals"]:
        assert (photos / original).is_file()
    with Store(store, create=False) as s:
        rows = {r[0]: (r[1], r[2], r[3]) for r in s.db.execute("SELECT path, status, error, image_id FROM files")}
        assert rows["edited/small.jpg"][0] == "missing" and "moved to" in rows["edited/small.jpg"][1]
        labels = s.labels()
        assert labels[rows["edited/small.jpg"][2]] == "keepme" and labels[rows[exact_copy][2]] == "keepme"
    remaining = [{m["path"] for m in g["members"]} for g in groups_of(store)]
    assert remaining == [{library["originals"][1], "edited/cropped.jpg"}]


def test_recoloured_variant_kept_apart(library):
    # Only the colour check separates it: without it the variant joins its original.
    loose = groups_of(library["store"], "--max-colour-change", "442")
    sets = [{m["path"] for m in g["members"]} for g in loose]
    # (another studio shot of the same motorbike model may join them too with the check off)
    group = next((g for g, paths in zip(loose, sets) if library["variant"] <= paths), None)
    assert group is not None, sets
    # measured against the kept one: another shot of the model when it joins (its match sits at
    # 0.950, on the threshold), else the variant itself (the larger file) and the original against it
    measured = [m for m in group["members"] if m["path"] in library["variant"] and not m["best"]]
    assert measured, group
    assert all(m["match"] >= 0.95 and m["colour_change"] > 20 for m in measured), measured
    assert all("variants/recoloured.jpg" not in s for s in
               [{m["path"] for m in g["members"]} for g in groups_of(library["store"])])
