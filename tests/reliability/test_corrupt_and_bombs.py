"""2-7 end to end: one `organizer index` over a folder of good photos mixed with corrupt files,
decompression bombs, disguised formats, odd colour modes, multi-frame files and HEIC/AVIF.
It must exit 0, embed every good file, record every bad one with its error, count both in the
summary, and stay small in memory. (The decoder's own cases are in tests/test_decode.py.)"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, features

from support import run_cli

from .helpers import check_consistent, copy_photos, new_store, run_measured, summary

BAD = {  # name -> a word the recorded error must contain
    "trunc/jpeg10.jpg": "truncated", "trunc/jpeg50.jpg": "truncated",
    "trunc/png10.png": "truncated", "trunc/png50.png": "truncated",
    "junk/zero.jpg": "empty", "junk/random.jpg": "", "junk/text.png": "",
    "bombs/huge.png": "pixels", "bombs/liar.png": "pixels",
    "disguised/eps.jpg": "EPS", "disguised/psd.jpg": "PSD", "disguised/fits.jpg": "FITS",
}
ODD = ["modes/exif6.jpg", "modes/cmyk.jpg", "modes/grey16.png", "modes/palette_alpha.png", "modes/la.png",
       "modes/rgba.png", "frames/anim.gif", "frames/anim.webp", "frames/pages.tiff"]


def scene(size=(320, 240)) -> Image.Image:
    w, h = size
    im = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    d = ImageDraw.Draw(im)
    d.rectangle((w // 8, h // 8, w // 2, h // 2), fill=(250, 200, 10))
    d.ellipse((w // 2, h // 2, w - 5, h - 5), fill=(10, 20, 120))
    return im


def save(im, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def bomb_png(width: int, height: int, rows: int) -> bytes:
    """A 1-bit PNG of zeros, `rows` rows of it present: megabytes on disk, gigabytes decoded."""
    line = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(line * 64) for _ in range(rows // 64)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def frames(fmt: str) -> bytes:
    first, second = scene(), Image.new("RGB", (320, 240), (0, 200, 0))
    return save(first, fmt, save_all=True, append_images=[second], **({"duration": 100} if fmt != "TIFF" else {}))


def build(folder) -> None:
    copy_photos(folder, per_class=2, classes=6)  # 12 good photos
    jpeg, png = save(scene(), "JPEG", quality=90), save(scene(), "PNG")
    files = {
        "trunc/jpeg10.jpg": jpeg[: len(jpeg) // 10], "trunc/jpeg50.jpg": jpeg[: len(jpeg) // 2],
        "trunc/png10.png": png[: len(png) // 10], "trunc/png50.png": png[: len(png) // 2],
        "junk/zero.jpg": b"", "junk/random.jpg": np.random.default_rng(0).bytes(20_000),
        "junk/text.png": b"this is a note, not a picture\n" * 50,
        "bombs/huge.png": bomb_png(20_000, 20_000, 20_000),      # 400 MP, complete
        "bombs/liar.png": bomb_png(100_000, 100_000, 64),         # header claims 10 GP
        "disguised/eps.jpg": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
        "disguised/psd.jpg": b"8BPS\x00\x01" + b"\x00" * 20,
        "disguised/fits.jpg": b"SIMPLE  =                    T" + b" " * 2850,
        "frames/anim.gif": frames("GIF"), "frames/anim.webp": frames("WEBP"), "frames/pages.tiff": frames("TIFF"),
        "modes/cmyk.jpg": save(scene().convert("CMYK"), "JPEG"),
        "modes/grey16.png": save(Image.fromarray((np.linspace(0, 65535, 320 * 240).reshape(240, 320))
                                                 .astype(np.uint16)), "PNG"),
        "modes/palette_alpha.png": save(scene().convert("P"), "PNG", transparency=0),
        "modes/la.png": save(scene().convert("LA"), "PNG"),
        "modes/rgba.png": save(scene().convert("RGBA"), "PNG"),
        "heif/phone.heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200,
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    files["modes/exif6.jpg"] = save(scene((300, 200)), "JPEG", exif=exif.tobytes())
    if features.check("avif"):
        files["heif/new.avif"] = save(scene(), "AVIF")
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


@pytest.fixture(scope="module")
def indexed(sample_store, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    folder = base / "photos"
    build(folder)
    store = new_store(sample_store, base / "store")
    proc, peak_kb = run_measured("index", folder, "--store", store, "--backbone", "efficientnet-lite0",
                                 "--show-errors", "100")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder, store, proc, peak_kb


def test_index_exits_0_and_counts_every_file(indexed):
    folder, store, proc, _ = indexed
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    counts = summary(proc.stdout)
    n_files = sum(1 for p in folder.rglob("*") if p.is_file())
    heic_ok = any(folder.glob("heif/*.avif"))
    assert counts["files"] == n_files
    assert counts["failed"] == len(BAD) + 1  # + the HEIC without pillow-heif
    assert counts["embedded"] == n_files - counts["failed"] and counts["reused"] == 0
    state = check_consistent(store)
    assert set(state["errors"]) == set(BAD) | {"heif/phone.heic"}
    assert len(state["files"]) == 12 + len(ODD) + heic_ok


@pytest.mark.parametrize("rel", sorted(BAD))
def test_bad_file_is_recorded_with_its_error(indexed, rel):
    _, store, proc, _ = indexed
    error = check_consistent(store)["errors"][rel]
    assert rel in error and BAD[rel].lower() in error.lower() and "\n" not in error
    assert f"skipped {rel}:" in proc.stderr  # the command names it too, one line each


def test_bombs_refused_with_little_memory(indexed):
    """The 20,000 x 20,000 PNG would need 1.2 GB as RGB; the liar 30 GB. Peak RSS of the whole
    command (every process) stays far below the first."""
    _, _, proc, peak_kb = indexed
    assert peak_kb < 1_000_000, f"peak RSS {peak_kb / 1024:.0f} MiB"


def test_pixel_limit_is_configurable(indexed, tmp_path, sample_store):
    folder, _, _, _ = indexed
    store = new_store(sample_store, tmp_path / "limited")
    out = run_cli("index", folder / "modes", "--store", store, "--backbone", "efficientnet-lite0",
                  "--max-pixels", "50000")
    errors = check_consistent(store)["errors"]
    assert summary(out.stdout)["failed"] == 6 and all("pixels" in e for e in errors.values())  # all 320x240


def test_disguised_formats_never_reach_their_decoders(indexed):
    _, store, _, _ = indexed
    errors = check_consistent(store)["errors"]
    for rel in ("disguised/eps.jpg", "disguised/psd.jpg", "disguised/fits.jpg"):
        assert "not supported" in errors[rel] or "unsupported" in errors[rel], errors[rel]


def _image(store, rel):
    import sqlite3

    with sqlite3.connect(store / "organizer.db") as db:
        return db.execute("SELECT i.width, i.height, i.format, i.thumbnail FROM files f JOIN images i "
                          "ON i.id = f.image_id WHERE f.path=?", (rel,)).fetchone()


@pytest.mark.parametrize("rel", ODD)
def test_odd_modes_and_frames_become_sensible_rgb(indexed, rel):
    _, store, _, _ = indexed
    width, height, fmt, thumb = _image(store, rel)
    pixels = np.asarray(Image.open(io.BytesIO(thumb)).convert("RGB"), np.float64)
    assert 15 < pixels.mean() < 240 and pixels.std() > 20, (pixels.mean(), pixels.std())
    if rel == "modes/exif6.jpg":
        assert (width, height) == (200, 300)  # orientation applied
    if rel.startswith("frames/"):  # one record, first frame (the second is flat green)
        assert (width, height) == (320, 240) and fmt in ("GIF", "WEBP", "TIFF")
        assert abs(pixels[..., 1].mean() - pixels[..., 0].mean()) < 60


def test_heic_and_avif(indexed):
    folder, store, _, _ = indexed
    errors = check_consistent(store)["errors"]
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        assert 'organizer[heic]' in errors["heif/phone.heic"]  # the install hint
    if features.check("avif"):
        assert _image(store, "heif/new.avif")[2] == "AVIF"
