"""Tests for organizer.ingest.decode. Every image is made here with Pillow/numpy."""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, features

from organizer.ingest import decode
from organizer.ingest.decode import (ALLOWED_FORMATS, DEFAULT_MAX_PIXELS, SUPPORTED_EXTENSIONS,
                              DecodeError, Decoded, decode_image, make_thumbnail)

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ helpers

def scene(size=(320, 240), mode="RGB") -> Image.Image:
    """A picture with real contrast: gradient background, dark and light shapes."""
    w, h = size
    grad = Image.linear_gradient("L").resize((w, h))
    im = Image.merge("RGB", (grad, grad.transpose(Image.Transpose.ROTATE_90).resize((w, h)),
                             Image.new("L", (w, h), 90)))
    d = ImageDraw.Draw(im)
    d.rectangle((w // 8, h // 8, w // 2, h // 2), fill=(250, 240, 10))
    d.ellipse((w // 2, h // 2, w - 5, h - 5), fill=(10, 20, 30))
    return im.convert(mode) if mode != "RGB" else im


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def stats(im: Image.Image) -> tuple[float, float]:
    a = np.asarray(im, dtype=np.float64)
    return a.mean(), a.std()


def assert_contrast(d: Decoded):
    assert d.image.mode == "RGB"
    mean, std = stats(d.image)
    assert 20 < mean < 235, mean
    assert std > 30, std


def png_chunk(tag: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + tag + payload
            + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF))


def bomb_png(width: int, height: int, rows: int | None = None) -> bytes:
    """1-bit greyscale PNG of zeros, built chunk by chunk (no big allocation)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    block = row * 64
    n = height if rows is None else rows
    body = b"".join(comp.compress(block) for _ in range(n // 64)) + comp.compress(row * (n % 64))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", body + comp.flush()) + png_chunk(b"IEND", b""))


def is_one_line(msg: str) -> bool:
    return "\n" not in msg and "\r" not in msg and len(msg) < 400


# ------------------------------------------------------------------ 1. good images

def test_public_constants():
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
            ".heic", ".heif", ".avif"} <= SUPPORTED_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in SUPPORTED_EXTENSIONS)
    assert set(ALLOWED_FORMATS) >= {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"}
    assert 50_000_000 <= DEFAULT_MAX_PIXELS <= 2 * Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_common_formats_decode_to_rgb(fmt):
    data = encode(scene(), fmt)
    d = decode_image(data, name=f"a.{fmt.lower()}")
    assert isinstance(d, Decoded)
    assert (d.width, d.height, d.format) == (320, 240, fmt)
    assert d.image.size == (320, 240)  # short side 240 already near min_side
    assert_contrast(d)


def test_large_jpeg_uses_draft_scale():
    data = encode(scene((4000, 3000)), "JPEG", quality=85)  # 12 megapixels
    d = decode_image(data, name="big.jpg")
    assert (d.width, d.height) == (4000, 3000)
    assert min(d.image.size) >= 224
    # Exactly a DCT scale (1/8 here), not a box reduction of a full decode.
    assert d.image.size == (500, 375)
    assert_contrast(d)
    d2 = decode_image(data, name="big.jpg", min_side=1000)
    assert d2.image.size == (2000, 1500)


def test_large_png_is_reduced():
    d = decode_image(encode(scene((1800, 1200)), "PNG"), name="big.png")
    assert (d.width, d.height) == (1800, 1200)
    assert 224 <= min(d.image.size) < 2 * 224
    assert abs(d.image.size[0] / d.image.size[1] - 1.5) < 0.02
    assert_contrast(d)


def test_small_image_is_not_upscaled():
    d = decode_image(encode(scene((100, 50)), "PNG"), name="small.png")
    assert d.image.size == (100, 50) and (d.width, d.height) == (100, 50)


def test_mpo_is_reported_as_jpeg():
    data = encode(scene(), "MPO", save_all=True, append_images=[scene().rotate(90)])
    d = decode_image(data, name="phone.jpg")
    assert d.format == "JPEG" and (d.width, d.height) == (320, 240)


# ------------------------------------------------------------------ 2. corrupt inputs

@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.1, 0.5])
def test_truncated_is_an_error(fmt, keep):
    data = encode(scene((640, 480)), fmt)
    name = f"cut/{keep}.{fmt.lower()}"
    with pytest.raises(DecodeError) as e:
        decode_image(data[: int(len(data) * keep)], name=name)
    msg = str(e.value)
    assert name in msg and "truncated" in msg and is_one_line(msg)


def test_truncated_large_jpeg_in_draft_mode_is_an_error():
    data = encode(scene((3000, 2000)), "JPEG")
    with pytest.raises(DecodeError, match="truncated"):
        decode_image(data[: len(data) // 2], name="half.jpg")


@pytest.mark.parametrize("data,expect", [
    (b"", "empty"),
    (random.Random(1).randbytes(5000), "not an image"),
    (b"Dear diary,\nToday I renamed a text file to photo.jpg.\n" * 20, "text"),
])
def test_garbage_is_an_error(data, expect):
    with pytest.raises(DecodeError) as e:
        decode_image(data, name="x/photo.jpg")
    assert "x/photo.jpg" in str(e.value) and expect in str(e.value)
    assert is_one_line(str(e.value))


def test_fuzzed_files_never_leak_other_exceptions():
    rng = random.Random(7)
    seeds = [encode(scene((64, 48)), f) for f in ("JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP")]
    for i in range(240):
        buf = bytearray(seeds[i % len(seeds)])
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        if i % 3 == 0:
            buf = buf[: rng.randrange(1, len(buf))]
        try:
            d = decode_image(bytes(buf), name=f"fuzz{i}")
        except DecodeError as e:
            assert f"fuzz{i}" in str(e) and is_one_line(str(e))
        else:
            assert d.image.mode == "RGB"


def test_name_is_made_printable():
    with pytest.raises(DecodeError) as e:
        decode_image(b"\x00" * 10, name="bad\nname\udcff.jpg")
    assert is_one_line(str(e.value)) and "bad\\nname" in str(e.value)
    str(e.value).encode("utf-8")  # no lone surrogates left


# ------------------------------------------------------------------ 3. decompression bombs

@pytest.mark.parametrize("pillow_limit", [True, False])
def test_bombs_are_refused(monkeypatch, pillow_limit):
    if not pillow_limit:  # our per-call check must work without Pillow's global one
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    for data, dims in [(bomb_png(20_000, 20_000), "20000x20000"),
                       (bomb_png(100_000, 100_000, rows=2), "100000x100000")]:
        with pytest.raises(DecodeError, match="too large") as e:
            decode_image(data, name="bomb.png")
        assert "bomb.png" in str(e.value) and is_one_line(str(e.value))
        if not pillow_limit:
            assert dims in str(e.value)


def test_bombs_use_little_memory(tmp_path):
    paths = []
    for w, h, rows in [(20_000, 20_000, None), (100_000, 100_000, 2)]:
        p = tmp_path / f"bomb{w}.png"
        p.write_bytes(bomb_png(w, h, rows))
        paths.append(str(p))
    script = (
        "import resource, sys\n"
        "from PIL import Image\n"
        "Image.MAX_IMAGE_PIXELS = None\n"
        "from organizer.ingest.decode import decode_image, DecodeError\n"
        "datas = [open(p, 'rb').read() for p in sys.argv[1:]]\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for d in datas:\n"
        "    try:\n"
        "        decode_image(d, name='bomb.png')\n"
        "        sys.exit('decoded a bomb')\n"
        "    except DecodeError:\n"
        "        pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, *paths], cwd=REPO, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    growth_kb = int(out.stdout.split()[-1])
    assert growth_kb < 200 * 1024, growth_kb


def test_max_pixels_per_call_and_env(monkeypatch):
    data = encode(scene((1200, 1000)), "PNG")  # 1.2 megapixels
    with pytest.raises(DecodeError, match="1200x1000") as e:
        decode_image(data, name="m.png", max_pixels=1_000_000)
    assert "ORGANIZER_MAX_PIXELS" in str(e.value)
    assert decode_image(data, name="m.png", max_pixels=2_000_000).width == 1200
    monkeypatch.setenv("ORGANIZER_MAX_PIXELS", "1M")
    with pytest.raises(DecodeError, match="too large"):
        decode_image(data, name="m.png")
    monkeypatch.setenv("ORGANIZER_MAX_PIXELS", "1500000")
    assert decode_image(data, name="m.png").width == 1200
    monkeypatch.setenv("ORGANIZER_MAX_PIXELS", "nonsense")
    assert decode._max_pixels(None) == DEFAULT_MAX_PIXELS


# ------------------------------------------------------------------ 4. format allow-list

def _psd_like() -> bytes:
    header = b"8BPS" + struct.pack(">H6sHIIHH", 1, b"\0" * 6, 3, 64, 64, 8, 3)
    return header + b"\0" * 12 + b"\x80" * (64 * 64 * 3)


@pytest.mark.parametrize("kind,make", [
    ("EPS", lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n"
                    b"newpath 0 0 moveto 64 64 lineto stroke\nshowpage\n%%EOF\n"),
    ("PSD", _psd_like),
    ("ICO", lambda: encode(scene((64, 64)), "ICO")),
    ("PCX", lambda: encode(scene((64, 48)), "PCX")),
    ("TGA", lambda: encode(scene((64, 48)), "TGA")),
    ("FITS", lambda: b"SIMPLE  =                    T" + b" " * 2850),
    ("PPM", lambda: encode(scene((64, 48)), "PPM")),  # Pillow decodes PPM; we must not
])
def test_other_formats_renamed_jpg_are_refused(kind, make):
    with pytest.raises(DecodeError) as e:
        decode_image(make(), name="renamed.jpg")
    msg = str(e.value)
    assert "renamed.jpg" in msg and "unsupported format" in msg and kind in msg, msg
    assert is_one_line(msg)


def test_open_only_ever_sees_allowed_formats(monkeypatch):
    seen = []
    real_open = Image.open

    def spy(fp, mode="r", formats=None):
        seen.append(formats)
        return real_open(fp, mode, formats)

    monkeypatch.setattr(Image, "open", spy)
    decode_image(encode(scene(), "PNG"), name="a.png")
    with pytest.raises(DecodeError):
        decode_image(encode(scene((64, 48)), "PCX"), name="b.jpg")
    assert seen and all(f is not None and set(f) <= set(ALLOWED_FORMATS) | {"AVIF", "HEIF"}
                        for f in seen)


# ------------------------------------------------------------------ 5. orientation and colour

def test_exif_orientation_is_applied():
    im = Image.new("RGB", (300, 200), (220, 20, 20))
    im.paste((20, 20, 220), (150, 0, 300, 200))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display = rotate 90 degrees clockwise
    d = decode_image(encode(im, "JPEG", exif=exif, quality=95), name="rot.jpg")
    assert (d.width, d.height) == (200, 300)
    assert d.image.size == (200, 300)
    top, bottom = d.image.getpixel((100, 20)), d.image.getpixel((100, 280))
    assert top[0] > 150 and top[2] < 80  # red went to the top
    assert bottom[2] > 150 and bottom[0] < 80


def test_orientation_with_draft_reports_full_rotated_size():
    exif = Image.Exif()
    exif[0x0112] = 8
    d = decode_image(encode(scene((2400, 1600)), "JPEG", exif=exif), name="r.jpg")
    assert (d.width, d.height) == (1600, 2400)
    assert d.image.size[0] < d.image.size[1] and min(d.image.size) >= 224


def _gradient16(hi: int) -> np.ndarray:
    a = np.linspace(0, hi, 200 * 300).reshape(200, 300)
    a[50:150, 50:150] = hi * 0.9
    return a


@pytest.mark.parametrize("label,make,fmt", [
    ("cmyk_jpeg", lambda: scene().convert("CMYK"), "JPEG"),
    ("i16_png", lambda: Image.fromarray(_gradient16(65535).astype(np.uint16)), "PNG"),
    ("i16_12bit", lambda: Image.fromarray(_gradient16(4095).astype(np.uint16)), "PNG"),
    ("mode_I", lambda: Image.fromarray(_gradient16(1_000_000).astype(np.int32)), "TIFF"),
    ("mode_I_neg", lambda: Image.fromarray((_gradient16(2000) - 1000).astype(np.int32)), "TIFF"),
    ("mode_F", lambda: Image.fromarray(_gradient16(1.0).astype(np.float32)), "TIFF"),
    ("mode_F_wide", lambda: Image.fromarray(_gradient16(5e6).astype(np.float32)), "TIFF"),
    ("palette", lambda: scene().convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
    ("L", lambda: scene().convert("L"), "PNG"),
    ("LA", lambda: scene().convert("LA"), "PNG"),
    ("RGBA", lambda: scene().convert("RGBA"), "PNG"),
    ("1", lambda: scene().convert("1"), "PNG"),
    ("1_tiff", lambda: scene().convert("1"), "TIFF"),
])
def test_modes_become_sensible_rgb(label, make, fmt):
    d = decode_image(encode(make(), fmt), name=f"{label}.{fmt.lower()}")
    assert_contrast(d)


def test_cmyk_colours_survive():
    im = Image.new("RGB", (256, 256), (200, 30, 30)).convert("CMYK")
    d = decode_image(encode(im, "JPEG", quality=95), name="cmyk.jpg")
    r, g, b = d.image.getpixel((128, 128))
    assert r > 150 and g < 90 and b < 90


def test_transparency_is_composited_over_white():
    im = Image.new("RGBA", (300, 240), (0, 0, 0, 0))
    ImageDraw.Draw(im).rectangle((0, 0, 149, 239), fill=(10, 10, 120, 255))
    for data in (encode(im, "PNG"), encode(im, "WEBP", lossless=True),
                 encode(im.convert("P"), "PNG"), encode(im, "GIF")):
        d = decode_image(data, name="t.png")
        assert d.image.getpixel((250, 100)) == decode.BACKGROUND == (255, 255, 255)
        r, g, b = d.image.getpixel((50, 100))
        assert b > 80 and r < 60
    la = Image.new("LA", (300, 240), (0, 0))
    ImageDraw.Draw(la).rectangle((0, 0, 149, 239), fill=(30, 255))
    d = decode_image(encode(la, "PNG"), name="la.png")
    assert d.image.getpixel((250, 100)) == (255, 255, 255) and d.image.getpixel((50, 9))[0] < 60


# ------------------------------------------------------------------ 6. multi-frame

def _frames():
    return [Image.new("RGB", (240, 240), c) for c in ((230, 20, 20), (20, 230, 20), (20, 20, 230))]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "TIFF", "PNG"])
def test_multi_frame_gives_first_frame(fmt):
    first, *rest = _frames()
    data = encode(first, fmt, save_all=True, append_images=rest, duration=100)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 3
    d = decode_image(data, name=f"anim.{fmt.lower()}")
    r, g, b = d.image.getpixel((120, 120))
    assert r > 180 and g < 70 and b < 70
    assert (d.width, d.height) == (240, 240)


# ------------------------------------------------------------------ 7. HEIC / AVIF

HEIC_LIKE = (struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0" + b"mif1heic"
             + struct.pack(">I", 16) + b"meta" + b"\0" * 8 + b"\0" * 200)


def test_heic_without_pillow_heif_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import now fails
    monkeypatch.setattr(decode, "_heif_state", None)
    with pytest.raises(DecodeError) as e:
        decode_image(HEIC_LIKE, name="IMG_0001.HEIC")
    msg = str(e.value)
    assert "IMG_0001.HEIC" in msg and "HEIC" in msg and 'pip install "organizer[heic]"' in msg
    assert is_one_line(msg)


def test_heic_decodes_when_pillow_heif_installed():
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("libheif has no HEIC encoder to make a test file")
    buf = io.BytesIO()
    pillow_heif.from_pillow(scene()).save(buf, quality=90)
    d = decode_image(buf.getvalue(), name="a.heic")
    assert (d.width, d.height, d.format) == (320, 240, "HEIF")
    assert_contrast(d)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF codec")
def test_avif_decodes_with_native_pillow():
    d = decode_image(encode(scene(), "AVIF", quality=80), name="a.avif")
    assert (d.width, d.height, d.format) == (320, 240, "AVIF")
    assert_contrast(d)


# ------------------------------------------------------------------ warnings, thumbnails, import

def test_pil_warnings_do_not_escape(monkeypatch):
    bad_exif = (b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x02\x00\x12\x01\x03\x00\x01\x00\x00\x00"
                b"\x06\x00\x00\x00\x0f\x01\x02\x00\xff\xff\x00\x00\x00\x10\x00\x00")
    corrupt_exif = encode(scene(), "JPEG", exif=bad_exif)
    small = encode(scene((40, 40)), "PNG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = decode_image(corrupt_exif, name="exif.jpg")
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 px: a bomb *warning*
        decode_image(small, name="small.png")
    assert caught == []
    assert (d.width, d.height) == (240, 320)  # the orientation in the bad EXIF still applies


def test_make_thumbnail():
    d = decode_image(encode(scene((1000, 500)), "PNG"), name="t.png")
    data = make_thumbnail(d.image)
    assert data[:3] == b"\xff\xd8\xff"  # JPEG (tests/test_thumbnails.py: baseline, 4:2:0, old WebP still read)
    with Image.open(io.BytesIO(data)) as t:
        assert t.size == (256, 128)
    with Image.open(io.BytesIO(make_thumbnail(scene((90, 300)), size=64, quality=50))) as t:
        assert t.size == (19, 64)
    with Image.open(io.BytesIO(make_thumbnail(scene((100, 50)).convert("P")))) as t:
        assert t.size == (100, 50)  # never upscaled


def test_import_is_cheap():
    code = "import sys, organizer.ingest.decode; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
