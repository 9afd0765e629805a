"""Safe image decoding: bytes in, a small RGB image out, or one DecodeError.

Every failure (corrupt data, unsupported format, decompression bomb, out of
memory) becomes a DecodeError whose message is one line naming the file, so a
scan over a million files can log it and move on.

Decisions:
* Only ALLOWED_FORMATS (plus HEIF/AVIF when a decoder is present) are parsed;
  Pillow's many other plugins (EPS runs Ghostscript, etc.) never see the data.
* width*height is checked against max_pixels after reading the header and
  before any pixel is decoded.
* Any truncation is an error: Pillow would otherwise fill the missing part
  with grey and we would embed a half-grey picture as if it were fine.
  ImageFile.LOAD_TRUNCATED_IMAGES is left alone (it is process-global).
* Transparent pixels are composited over white (BACKGROUND): the convention
  for product shots and what viewers show for logos/icons.
* MPO (multi-picture JPEG from phones and 3D cameras) is reported as "JPEG".
"""

from __future__ import annotations

import io
import os
import re
import threading
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
     ".heic", ".heif", ".avif"}
)
# Always registered in Pillow, so safe to pass to Image.open(formats=...) anywhere.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
# Added per call only when a decoder is actually registered (see _formats()).
_OPTIONAL_FORMATS = ("AVIF", "HEIF")
# 120 MP admits 102 MP medium-format cameras; a 120 MP RGBA PNG already needs ~0.5 GB.
DEFAULT_MAX_PIXELS: int = 120_000_000
MAX_PIXELS_ENV = "ORGANIZER_MAX_PIXELS"
BACKGROUND = (255, 255, 255)
HEIC_HINT = 'install organizer[heic] (pip install "organizer[heic]")'

# EXIF orientation -> transpose that undoes it; 5..8 swap width and height.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class DecodeError(Exception):
    """The image cannot be used; str(e) is one line: file, problem, fix."""


@dataclass
class Decoded:
    image: Image.Image  # RGB, oriented, first frame, short side >= min_side when possible
    width: int          # full-size width after orientation
    height: int
    format: str         # Pillow format name, e.g. "JPEG"


# --------------------------------------------------------------------------- formats

_lock = threading.Lock()
_heif_state: bool | None = None  # None: not tried yet


def _heif_ok() -> bool:
    """Register pillow-heif's opener on first use; False if it is not installed."""
    global _heif_state
    if _heif_state is None:
        with _lock:
            if _heif_state is None:
                try:
                    import pillow_heif

                    pillow_heif.register_heif_opener()
                    _heif_state = True
                except Exception:  # absent or broken install: treat as absent
                    _heif_state = False
    return _heif_state


def _formats() -> tuple[str, ...]:
    # Import the plugins we allow (cheap after the first call) without Image.init(),
    # which would import every plugin.
    from PIL import (BmpImagePlugin, GifImagePlugin, JpegImagePlugin,  # noqa: F401
                     PngImagePlugin, TiffImagePlugin, WebPImagePlugin)
    try:
        from PIL import AvifImagePlugin  # noqa: F401  (Pillow >= 11.3)
    except ImportError:
        pass
    # Image.open raises KeyError for names that are not registered, so filter.
    extra = tuple(f for f in _OPTIONAL_FORMATS
                  if (f != "HEIF" or _heif_ok()) and f in Image.OPEN)
    return ALLOWED_FORMATS + extra


def _sniff(data: bytes) -> str | None:
    """Name the kind of file from its magic bytes, for error messages only."""
    head = bytes(data[:64])
    if head[4:8] == b"ftyp":
        brands = bytes(data[8:min(len(data), 8 + 64)])
        major = brands[:4]
        if major in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"):
            return "HEIC"
        if major in (b"avif", b"avis") or b"avif" in brands:
            return "AVIF"
        if major in (b"mif1", b"msf1"):
            return "HEIF"
        if major == b"crx ":
            return "CR3 (Canon raw)"
        return "video (MP4/QuickTime)"
    if bytes(data[-18:]) == b"TRUEVISION-XFILE.\x00":  # before ICO/CUR: same first bytes
        return "TGA"
    table = (
        (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"),
        (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"),
        (b"MM\x00+", "TIFF"), (b"%!PS", "EPS (PostScript)"),
        (b"\xc5\xd0\xd3\xc6", "EPS (PostScript)"), (b"%PDF", "PDF"),
        (b"8BPS", "PSD (Photoshop)"), (b"SIMPLE  =", "FITS"),
        (b"\x00\x00\x01\x00", "ICO (icon)"), (b"\x00\x00\x02\x00", "CUR (cursor)"),
        (b"\xff\x0a", "JPEG XL"), (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
        (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xffO\xffQ", "JPEG 2000"),
        (b"FUJIFILMCCD-RAW", "RAF (Fujifilm raw)"), (b"qoif", "QOI"),
        (b"PK\x03\x04", "ZIP archive"), (b"\x1f\x8b", "gzip archive"),
    )
    for magic, kind in table:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(data) >= 26:
        return "BMP"
    if len(head) >= 3 and head[0] == 0x0A and head[1] in (0, 2, 3, 5) and head[2] in (0, 1):
        return "PCX"
    if b"<svg" in bytes(data[:1024]).lower():
        return "SVG"
    # Fall back to Pillow's prefix checks (pure byte comparisons, no parsing).
    Image.init()
    for fmt in Image.ID:
        accept = Image.OPEN[fmt][1]
        if fmt in ALLOWED_FORMATS + _OPTIONAL_FORMATS or accept is None:
            continue
        try:
            if accept(head[:16]) is True:
                return fmt
        except Exception:
            continue
    try:
        text = bytes(data[:512]).decode("utf-8")
        if all(c.isprintable() or c in "\r\n\t" for c in text):
            return "text"
    except UnicodeDecodeError:
        pass
    return None


def _unidentified(data: bytes, label: str) -> DecodeError:
    kind = _sniff(data)
    if kind in ALLOWED_FORMATS:
        return DecodeError(f"{label}: corrupt or truncated {kind} (header unreadable); "
                           "re-copy or re-export the file")
    if kind in ("HEIC", "HEIF"):
        return DecodeError(f"{label}: unsupported format {kind}: {HEIC_HINT}")
    if kind == "AVIF":
        return DecodeError(f"{label}: unsupported format AVIF: upgrade Pillow to 11.3 "
                           f"or newer, or {HEIC_HINT}")
    if kind == "text":
        return DecodeError(f"{label}: not an image (the file contains text)")
    if kind is None:
        return DecodeError(f"{label}: not an image, or a format organizer does not know")
    return DecodeError(f"{label}: unsupported format {kind}; "
                       "convert it to JPEG or PNG to include it")


# --------------------------------------------------------------------------- helpers

def _one_line(text: object, limit: int = 200) -> str:
    # Names may hold control characters or undecodable bytes (surrogates) that
    # would break a log line or a print(); escape them.
    s = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _max_pixels(max_pixels: int | None) -> int:
    if max_pixels is not None:
        if max_pixels <= 0:
            raise ValueError("max_pixels must be positive")
        return int(max_pixels)
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip().upper().replace("_", "")
    scale = 1
    for suffix in ("MP", "M"):  # "150M" and "150MP" mean megapixels
        if raw.endswith(suffix):
            raw, scale = raw[: -len(suffix)], 1_000_000
            break
    try:
        value = int(float(raw) * scale)
    except ValueError:
        return DEFAULT_MAX_PIXELS  # unset or unparseable: the default
    return value if value > 0 else DEFAULT_MAX_PIXELS


def _orientation(im: Image.Image) -> int:
    try:  # getexif also reads XMP tiff:Orientation; malformed EXIF is not fatal
        value = im.getexif().get(0x0112, 1)
        return value if value in _TRANSPOSE else 1
    except Exception:
        return 1


def _high_bit_to_l(im: Image.Image) -> Image.Image:
    """Scale a 16/32-bit or float greyscale image into 0..255 ("L").

    Pillow's own convert() clips (a 16-bit photo turns white), so pick the range
    the data was meant for: 8, 12 or 16 bits, 0..1 for float, else min..max.
    """
    lo, hi = im.getextrema()
    if im.mode == "F" and lo >= 0 and hi <= 1:
        low, full = 0.0, 1.0
    elif lo >= 0 and hi <= 65535:
        low, full = 0.0, 255.0 if hi <= 255 else 4095.0 if hi <= 4095 else 65535.0
    else:
        low, full = float(lo), float(hi - lo) or 1.0
    scale = 255.0 / full
    return im.convert("F").point(lambda v: v * scale - low * scale).convert("L")


def _to_rgb(im: Image.Image, min_side: int) -> Image.Image:
    """Loaded image of any mode -> RGB, reduced so its short side stays >= min_side."""
    mode = im.mode
    # 1. Get into a mode Image.reduce understands, keeping alpha and bit depth.
    if mode in ("P", "PA") or (mode in ("L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode.startswith("I;16"):
        im = im.convert("I")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("La", "RGBa"):
        im = im.convert("RGBA")
    # 2. Cheap box reduction by an integer factor (JPEGs were already reduced by draft).
    factor = min(im.size) // min_side if min_side > 0 else 0
    if factor >= 2:
        im = im.reduce(factor)
    # 3. Final RGB.
    if im.mode in ("I", "F"):
        im = _high_bit_to_l(im)
    if im.mode in ("LA", "RGBA"):
        background = Image.new("RGB", im.size, BACKGROUND)
        background.paste(im.convert("RGB"), mask=im.getchannel("A"))
        return background
    return im if im.mode == "RGB" else im.convert("RGB")


# --------------------------------------------------------------------------- API

def decode_image(data: bytes, *, name: str = "<bytes>", min_side: int = 224,
                 max_pixels: int | None = None) -> Decoded:
    """Decode an image file's bytes; raise DecodeError for anything unusable.

    max_pixels defaults to $ORGANIZER_MAX_PIXELS (e.g. "150M") or
    DEFAULT_MAX_PIXELS. Pillow's own bomb limit (Image.MAX_IMAGE_PIXELS * 2)
    still applies above that.
    """
    label = _one_line(name)
    limit = _max_pixels(max_pixels)
    if not data:
        raise DecodeError(f"{label}: empty file (0 bytes)")
    fmt = "image"
    error: DecodeError | None = None
    try:
        # Per call, not global: e.g. "Possibly corrupt EXIF data",
        # DecompressionBombWarning (we apply our own limit).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                im = Image.open(io.BytesIO(data), formats=_formats())
            except UnidentifiedImageError:
                error = _unidentified(data, label)
            else:
                with im:
                    fmt = "JPEG" if im.format == "MPO" else str(im.format)
                    width, height = im.size
                    if width <= 0 or height <= 0:
                        raise DecodeError(f"{label}: invalid {fmt} size {width}x{height}")
                    if width * height > limit:
                        raise DecodeError(
                            f"{label}: image too large: {width}x{height} = "
                            f"{width * height / 1e6:.1f} megapixels, over the limit of "
                            f"{limit / 1e6:.1f}; set {MAX_PIXELS_ENV} to allow more")
                    if fmt == "JPEG" and min_side > 0:
                        # Decode at 1/2, 1/4 or 1/8 DCT scale, never below min_side.
                        im.draft("RGB", (min_side, min_side))
                    im.load()  # decode everything now so truncation raises here
                    orientation = _orientation(im)
                    out = _to_rgb(im, min_side)
                if orientation != 1:
                    out = out.transpose(_TRANSPOSE[orientation])
                    if orientation >= 5:
                        width, height = height, width
                return Decoded(image=out, width=width, height=height, format=fmt)
    except DecodeError as e:
        error = e
    except Image.DecompressionBombError as e:
        # Pillow's hard limit (2 * Image.MAX_IMAGE_PIXELS), hit before our own check.
        numbers = [int(n) for n in re.findall(r"\d+", str(e))][:2]
        size = (f"{numbers[0] / 1e6:.1f} megapixels, over Pillow's safety limit of "
                f"{numbers[1] / 1e6:.1f}" if len(numbers) == 2 else _one_line(e))
        error = DecodeError(f"{label}: image too large: {size}")
    except MemoryError:
        error = DecodeError(f"{label}: out of memory decoding this {fmt}; "
                            f"lower {MAX_PIXELS_ENV} or free memory")
    except Exception as e:  # any other decoder failure means bad data
        if fmt == "image":  # failed inside Image.open: name the kind from its magic bytes
            kind = _sniff(data)
            fmt = kind if kind in ALLOWED_FORMATS + _OPTIONAL_FORMATS else fmt
        detail = _one_line(f"{type(e).__name__}: {e}", 160)
        error = DecodeError(f"{label}: corrupt or truncated {fmt} ({detail}); "
                            "re-copy or re-export the file")
    # Raised outside the except blocks so the error does not keep the failed
    # decoder's frames (and the file's bytes) alive through __context__.
    raise error


THUMB_FORMAT = "JPEG"  # baseline JPEG: ~0.1 ms to encode against 1-3 ms for WebP method 1 (benchmarks/README.md, issue 17)
# Bicubic shrinks a photo to 256 px in ~0.5 ms against ~0.75 for Lanczos (then the thumbnail's largest
# cost), pixels within ~1 level; bilinear (~0.3 ms) cost duplicate detection a wrong pair (README, issue 17).
THUMB_FILTER = Image.Resampling.BICUBIC


def make_thumbnail(image: Image.Image, size: int = 256, quality: int = 80) -> bytes:
    """Encode a baseline JPEG thumbnail (RGB, 4:2:0) whose longest side is <= size, aspect kept.

    Indexing makes one per image, so this is on the indexer's critical path: an integer box
    reduction first (reducing_gap 1) and JPEG, the cheapest codec to encode. Transparent pixels
    are composited over BACKGROUND, as decode_image does. Thumbnails stored by older versions are
    WebP: readers open them with Image.open, which tells the format from the bytes."""
    if size < 1 or not 0 <= quality <= 100:
        raise ValueError("size must be >= 1 and quality in 0..100")
    try:
        im = image
        if im.mode == "P" or (im.mode in ("L", "RGB") and "transparency" in im.info):
            im = im.convert("RGBA")
        elif im.mode not in ("RGB", "RGBA", "LA", "L"):
            im = im.convert("RGB")
        width, height = im.size
        if max(width, height) > size:
            scale = size / max(width, height)
            new = (max(1, min(size, round(width * scale))),
                   max(1, min(size, round(height * scale))))
            im = im.resize(new, THUMB_FILTER, reducing_gap=1.0)
        if im.mode in ("RGBA", "LA"):
            flat = Image.new("RGB", im.size, BACKGROUND)
            flat.paste(im.convert("RGB"), mask=im.getchannel("A"))
            im = flat
        elif im.mode != "RGB":
            im = im.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, THUMB_FORMAT, quality=quality, subsampling=2, optimize=False, progressive=False)
        return buf.getvalue()
    except Exception as e:
        raise DecodeError(f"cannot make thumbnail: {_one_line(e, 160)}") from None
