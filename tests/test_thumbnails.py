"""Thumbnails are baseline JPEG since issue 17; the WebP ones older stores hold are still read, told
apart by their bytes: shown by id, and compared by duplicate detection against new JPEG ones."""
from __future__ import annotations

import io
import json
import shutil
import sqlite3

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from organizer.ingest.decode import BACKGROUND, decode_image, make_thumbnail
from support import ROOT, SAMPLE, run_cli

FIXTURE = ROOT / "tests" / "fixtures" / "store-v3"  # indexed by an older organizer: WebP thumbnails
JPEG, WEBP = b"\xff\xd8\xff", b"RIFF"


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), np.float32)


def like(path, size) -> np.ndarray:
    """The original, decoded and shrunk to `size`: what its thumbnail should look like."""
    im = decode_image(path.read_bytes(), name=path.name, min_side=256).image
    return np.asarray(im.resize(size, Image.Resampling.LANCZOS), np.float32)


def test_new_thumbnails_are_baseline_jpeg_420():
    im = decode_image((SAMPLE / "ketch" / "image_0001.jpg").read_bytes(), min_side=256).image
    data = make_thumbnail(im)
    assert data[:3] == JPEG
    markers = {data[i + 1] for i in range(len(data) - 1) if data[i] == 0xFF}
    assert 0xC0 in markers and 0xC2 not in markers, "baseline, not progressive"
    with Image.open(io.BytesIO(data)) as t:
        assert t.mode == "RGB" and max(t.size) == 256
        assert JpegImagePlugin.get_sampling(t) == 2  # 4:2:0
        assert np.abs(np.asarray(t, np.float32) - like(SAMPLE / "ketch" / "image_0001.jpg", t.size)).mean() < 6


def test_transparent_pixels_over_the_decoder_background():
    a = np.zeros((200, 300, 4), np.uint8)
    a[..., :3] = (20, 120, 200)
    a[:, 150:, 3] = 255  # left half fully transparent
    rgba = Image.fromarray(a, "RGBA")
    png = io.BytesIO()
    rgba.save(png, "PNG")
    for source in (rgba, rgba.convert("LA"), rgba.convert("P"), decode_image(png.getvalue(), name="t.png").image):
        t = pixels(make_thumbnail(source))
        assert np.abs(t[:, :120] - np.array(BACKGROUND, np.float32)).max() < 8, ("transparent -> background", source.mode)
    t = pixels(make_thumbnail(rgba))
    assert np.abs(t[:, 140:] - np.array((20, 120, 200), np.float32)).mean() < 6, "opaque pixels kept"
    # the decoder's composite and the thumbnailer's agree (the index path gets the decoder's)
    direct, decoded = pixels(make_thumbnail(rgba)), pixels(make_thumbnail(decode_image(png.getvalue()).image))
    assert np.abs(direct - decoded).mean() < 1.0


@pytest.fixture
def mixed(tmp_path):
    """store-v3 (WebP thumbnails) re-indexed after 3 photos were added: a re-encoded, shrunk copy of
    one of its photos and two new photos, which get JPEG thumbnails."""
    photos, store = tmp_path / "photos", tmp_path / "store"
    shutil.copytree(FIXTURE / "photos", photos)
    shutil.copytree(FIXTURE / "store", store)
    db = sqlite3.connect(store / "organizer.db")
    with db:
        db.execute("UPDATE meta SET value=? WHERE key='library_root'", (str(photos),))
    db.close()
    original = photos / "bonsai" / "image_0002.jpg"
    with Image.open(original) as im:
        (photos / "copies").mkdir()
        im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4), Image.Resampling.LANCZOS) \
            .save(photos / "copies" / "bonsai.jpg", "JPEG", quality=60)
    (photos / "new").mkdir()
    for cls in ("ketch", "watch"):
        shutil.copy2(SAMPLE / cls / "image_0001.jpg", photos / "new" / f"{cls}.jpg")
    out = run_cli("index", photos, "--store", store).stdout
    assert "15 unchanged" in out, out
    return photos, store


def test_old_webp_and_new_jpeg_thumbnails_both_read(mixed):
    from organizer import Library

    photos, store = mixed
    lib = Library(store, create=False)
    try:
        paths = {p: i for i, p in lib.store.db.execute("SELECT image_id, path FROM files WHERE status='ok'")}
        thumbs = lib.thumbnails(list(paths.values()))
        assert len(thumbs) == 18
        kinds = {p: thumbs[i][:4] for p, i in paths.items()}
        assert {p for p, k in kinds.items() if k[:3] == JPEG} == {"copies/bonsai.jpg", "new/ketch.jpg", "new/watch.jpg"}
        assert sum(k == WEBP for k in kinds.values()) == 15, "old thumbnails are kept as they were"
        for path, image_id in paths.items():
            t = pixels(thumbs[image_id])
            size = (t.shape[1], t.shape[0])
            with Image.open(photos / path) as original:
                assert max(size) == min(256, max(original.size)), path  # shrunk, never enlarged
            err = np.abs(t - like(photos / path, size)).mean()
            other = next(q for q in paths if q.split("/")[0] != path.split("/")[0])  # control: another photo
            assert err < 8 and err < np.abs(t - like(photos / other, size)).mean() / 3, (path, err)
        # the heatmap overlay reads the old WebP and the new JPEG thumbnail alike
        for path in ("bonsai/image_0001.jpg", "new/ketch.jpg"):
            with Image.open(io.BytesIO(lib.explained_thumbnail(paths[path]))) as overlay:
                assert overlay.format == "PNG" and max(overlay.size) == 256
    finally:
        lib.close()
    # duplicate detection pairs an old WebP thumbnail with a new JPEG one, and nothing else
    groups = json.loads(run_cli("duplicates", "--store", store, "--json").stdout)
    assert [sorted(m["path"] for m in g["members"]) for g in groups] == [["bonsai/image_0002.jpg", "copies/bonsai.jpg"]]
