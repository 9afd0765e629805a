"""Pixel checks for near-copy candidates: align one picture onto the other, then ask two questions.

  match   colour correlation of the aligned pictures at 64x64. Two studio photos of one product
          in one pose share embeddings and low-frequency hashes; their aligned pixels differ.
  colour  the largest colour change of any of the 8x8 cells (1/64 of the picture each) of the
          aligned pictures, in RGB units (0-255), each cell allowed to slide one pixel to absorb
          what alignment leaves. A re-save, resize or slight crop moves every cell a little
          (planted copies of caltech101-8: at most 17); a recoloured tank, a swapped background
          or new text moves some cells a lot (60-190). Such a picture is a variant of the
          photograph, not a copy a user wants merged, even though it correlates above 0.97
          overall: the change covers only part of the picture.

Both come from the stored 256-px thumbnails (or the original file when there is none): for the
question asked, a cell of 1/64 of the picture, 256 px is already more than enough, and decoding
originals again is what makes indexing slow. Each pair's result is cached by the two image ids
(content hashes, so never stale) and the check's version.
"""
from __future__ import annotations

import io
from collections import OrderedDict

import numpy as np

from organizer.store import Store

ALIGN_SIZE = 64
CELLS = 8                                 # cells per side for the colour check
CHECK_ALGO = "align64-profiles+cells8-shift1/v1"  # stored with each cached pair result
_SCALES = np.arange(0.84, 1.0001, 0.005)  # crops of up to 16% per axis
_GRID = [(t, s) for s in _SCALES for t in np.arange(0.0, 1.0 - s + 1e-9, 0.004)]
_U = (np.arange(ALIGN_SIZE) + 0.5) / ALIGN_SIZE
_POS = np.array([t for t, _ in _GRID])[:, None] + np.array([s for _, s in _GRID])[:, None] * _U[None, :]


def image_for(store: Store, image_id: str):
    """The image's thumbnail as a picture (made from the original by the safe decoder and stored,
    the way the app does, when the image has none); None if unreadable."""
    from PIL import Image

    from organizer.ingest.thumbnails import thumbnails

    data = thumbnails(store, [image_id]).get(image_id)
    if not data:
        return None
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im
    except Exception:  # an unreadable thumbnail only means this image cannot be confirmed
        return None


class Prepared:
    """What the checks need of one image: the RGB picture and its grey row and column profiles."""

    def __init__(self, image):
        from PIL import Image

        self.rgb = image.convert("RGB")
        g = np.asarray(self.rgb.convert("L").resize((128, 128), Image.Resampling.BOX), np.float32)
        self.cols, self.rows = g.mean(axis=0), g.mean(axis=1)
        self.small = self._pixels(None)

    def _pixels(self, box) -> np.ndarray:
        from PIL import Image

        return np.asarray(self.rgb.resize((ALIGN_SIZE, ALIGN_SIZE), Image.Resampling.BOX, box=box), np.float32)


def _fit_axis(pa: np.ndarray, pb: np.ndarray) -> tuple[float, float]:
    """(start, extent) of the stretch of profile `pa` that best matches all of `pb` (both on [0, 1]):
    a crop and a resize are, along each axis, a shift and a scale."""
    xa = (np.arange(len(pa)) + 0.5) / len(pa)
    b = np.interp(_U, xa, pb)
    b = (b - b.mean()) / (b.std() + 1e-6)
    A = np.interp(_POS, xa, pa)
    A = (A - A.mean(1, keepdims=True)) / (A.std(1, keepdims=True) + 1e-6)
    return _GRID[int(np.argmax(A @ b))]


def _cell_change(A: np.ndarray, B: np.ndarray, shift: int = 1) -> float:
    """Largest, over CELLS x CELLS cells, of the smallest mean-colour distance between a cell of B
    and the same cell of A slid by up to `shift` pixels."""
    n, c = ALIGN_SIZE, ALIGN_SIZE // CELLS
    cells = lambda x: x.reshape(CELLS, c, CELLS, c, 3).mean(axis=(1, 3))  # noqa: E731
    cb = cells(B)
    P = np.pad(A, ((shift, shift), (shift, shift), (0, 0)), mode="edge")
    best = np.full((CELLS, CELLS), np.inf, np.float32)
    for dy in range(2 * shift + 1):
        for dx in range(2 * shift + 1):
            d = cells(P[dy:dy + n, dx:dx + n]) - cb
            best = np.minimum(best, np.sqrt((d * d).sum(axis=-1)))
    return float(best.max())


def _one_way(a: Prepared, b: Prepared) -> tuple[float, float]:
    x0, sx = _fit_axis(a.cols, b.cols)
    y0, sy = _fit_axis(a.rows, b.rows)
    w, h = a.rgb.size
    A = a._pixels((x0 * w, y0 * h, (x0 + sx) * w, (y0 + sy) * h))
    B = b.small
    Ac, Bc = A - A.mean(), B - B.mean()
    corr = float((Ac * Bc).sum() / (np.sqrt((Ac * Ac).sum() * (Bc * Bc).sum()) + 1e-6))
    return corr, _cell_change(A, B)


def compare(a: Prepared, b: Prepared) -> tuple[float, float]:
    """(match, colour) of the pair, either picture taken as the crop of the other: the best
    correlation and the smaller colour change of the two ways."""
    m1, c1 = _one_way(a, b)
    m2, c2 = _one_way(b, a)
    return max(m1, m2), min(c1, c2)


class Checker:
    """compare() for image ids: thumbnails prepared once each (a bounded cache: candidates come
    sorted by id, so most lookups hit recent images) and results cached in the store."""

    def __init__(self, store: Store, size: int = 4096):
        self.store, self.size, self.held = store, size, OrderedDict()
        self.known = {(r[0], r[1]): (r[2], r[3]) for r in store.db.execute(
            "SELECT a, b, match, colour FROM duplicate_checks WHERE algo=?", (CHECK_ALGO,))}
        self.fresh: list[tuple] = []

    def prepared(self, image_id: str) -> Prepared | None:
        if image_id in self.held:
            self.held.move_to_end(image_id)
            return self.held[image_id]
        im = image_for(self.store, image_id)
        value = Prepared(im) if im is not None else None
        self.held[image_id] = value
        if len(self.held) > self.size:
            self.held.popitem(last=False)
        return value

    def check(self, a: str, b: str) -> tuple[float, float]:
        """(match, colour) for two image ids; (0, inf) when either picture cannot be read."""
        key = (a, b) if a < b else (b, a)
        if key in self.known:
            return self.known[key]
        pa, pb = self.prepared(key[0]), self.prepared(key[1])
        if pa is None or pb is None:
            return 0.0, float("inf")  # not cached: the file may become readable
        result = compare(pa, pb)
        self.known[key] = result
        self.fresh.append((*key, CHECK_ALGO, *result))
        if len(self.fresh) >= 500:
            self.save()
        return result

    def save(self) -> None:
        if self.fresh:
            with self.store.transaction():
                self.store.db.executemany("INSERT OR REPLACE INTO duplicate_checks(a, b, algo, match, colour) "
                                          "VALUES(?,?,?,?,?)", self.fresh)
            self.fresh = []
