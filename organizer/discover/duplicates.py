"""Duplicate finding: exact copies (same content hash) and near-copies (close vectors, confirmed
by a perceptual hash and by their pixels), reported as groups with the copy worth keeping first.

Exact copies cost nothing: the store already maps every file to the hash of its bytes, so two
files with one image id are byte-identical. A near-copy is the same photograph re-saved (lower
JPEG quality), resized or slightly cropped; it passes four tests, cheapest first:
  1. FAISS proposes each image's nearest neighbours closer than `threshold` (cosine distance);
  2. their DCT perceptual hashes (whole picture and two centre crops, from the stored 256-px
     thumbnail: JPEG, or WebP in stores indexed before; cached in this module's own table)
     differ by at most `max_hash_distance` bits;
  3. the two thumbnails, one cropped onto the other (shift and scale found per axis from row and
     column profiles), correlate at least `min_match` in colour at 64x64;
  4. no eighth-by-eighth cell of the aligned thumbnails changed colour by more than
     `max_colour_change`.
Steps 1 and 2 alone pair studio photos of one product in one pose (Caltech 101 is full of
them); step 3 tells most of those apart from real copies. Step 4 keeps apart catalogue pictures
made from one photograph with the tank recoloured, the background replaced or a caption changed:
they correlate like copies, but they are different pictures, and merging them would lose one.
Steps 3 and 4 live in organizer.discover.duplicates_verify, which caches each pair's result. Measured in
benchmarks/duplicates_quality.py.

Nothing is deleted. `move_copies` moves the copies not suggested for keeping into a folder the
user names (never inside the library, never over an existing file) and records them as missing
with where they went, so their image ids and labels stay.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from organizer.discover.duplicates_verify import Checker, image_for
from organizer.store import Store, StoreError, atomic_write

# Tuned on caltech101-8 with 100 exact and 100 edited copies planted (benchmarks/duplicates_quality.py).
DEFAULT_THRESHOLD = 0.35          # cosine distance (1 - cosine similarity) between vectors
DEFAULT_MAX_HASH_DISTANCE = 12    # of 64 pHash bits, best pairing of crops
DEFAULT_MIN_MATCH = 0.95          # aligned colour correlation a near-copy must reach
DEFAULT_MAX_COLOUR_CHANGE = 20.0  # RGB units a cell may change: planted copies reach 17, recolourings 30+
NEIGHBOURS = 16                   # nearest neighbours asked per image: copies of one photo rarely exceed this
HASH_ALGO = "phash-dct32-8x8-crops/v1"  # stored with each hash; a different algorithm recomputes
HASH_CROPS = (0.0, 0.035, 0.07)


@dataclass
class Member:
    path: str
    image_id: str
    width: int
    height: int
    size: int
    best: bool = False
    similarity: float = 1.0       # cosine similarity to the best copy's vector
    hash_distance: int = 0        # pHash bits differing from the best copy
    match: float = 1.0            # aligned colour correlation with the best copy
    colour_change: float = 0.0    # largest colour change of a cell against the best copy (RGB units)


@dataclass
class Group:
    group: int
    kind: str                     # exact (one image, several files) | near
    best: str
    members: list[Member] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# -- perceptual hash and aligned comparison ----------------------------------------------
def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n))
    m[0] /= np.sqrt(2)
    return m


_DCT32 = _dct_matrix(32)


def phash(image) -> bytes:
    """DCT hashes (64 bits each) of the whole picture and of two centre crops (3.5% and 7% off
    each side): grey 32x32, 2-D DCT, the 8x8 lowest frequencies against their median. Low
    frequencies carry the layout, which re-encoding and resizing barely move; comparing the
    crops of one image with the whole of another absorbs a slight crop."""
    from PIL import Image

    grey = image.convert("L")
    w, h = grey.size
    out = []
    for c in HASH_CROPS:
        box = (w * c, h * c, w * (1 - c), h * (1 - c))
        a = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS, box=box), np.float64)
        low = (_DCT32 @ a @ _DCT32.T)[:8, :8].ravel()
        out.append(np.packbits(low > np.median(low[1:])))  # the DC term only measures brightness
    return np.concatenate(out).tobytes()


def hamming(a: bytes, b: bytes) -> int:
    """Fewest differing bits over every pairing of the two images' crops."""
    A = np.unpackbits(np.frombuffer(a, np.uint8)).reshape(-1, 64).astype(bool)
    B = np.unpackbits(np.frombuffer(b, np.uint8)).reshape(-1, 64).astype(bool)
    return int((A[:, None, :] != B[None, :, :]).sum(axis=2).min())


def image_hashes(store: Store, image_ids) -> dict[str, bytes]:
    """pHash per image id, from the cache or computed (and cached) from thumbnails."""
    wanted = list(dict.fromkeys(image_ids))
    out: dict[str, bytes] = {}
    for start in range(0, len(wanted), 900):
        part = wanted[start:start + 900]
        rows = store.db.execute(f"SELECT image_id, phash FROM duplicate_hashes WHERE algo=? AND image_id IN "
                                f"({','.join('?' * len(part))})", [HASH_ALGO, *part])
        out.update({r[0]: bytes(r[1]) for r in rows})
    fresh = []
    for image_id in wanted:
        if image_id in out:
            continue
        im = image_for(store, image_id)
        if im is None:
            continue
        out[image_id] = phash(im)
        fresh.append((image_id, HASH_ALGO, out[image_id]))
        if len(fresh) >= 500:
            _save_hashes(store, fresh)
            fresh = []
    _save_hashes(store, fresh)
    return out


def _save_hashes(store: Store, rows) -> None:
    if rows:
        with store.transaction():
            store.db.executemany("INSERT OR REPLACE INTO duplicate_hashes(image_id, algo, phash) VALUES(?,?,?)", rows)


# -- candidates from the vectors -----------------------------------------------------------
def near_pairs(store: Store, threshold: float, k: int = NEIGHBOURS) -> dict[tuple[str, str], float]:
    """(id_a, id_b) with id_a < id_b -> cosine similarity, for neighbours closer than `threshold`."""
    from organizer.search import load_index
    from organizer.store.vectors import count_present, iter_present_vectors

    if count_present(store) < 2:
        return {}
    index = load_index(store)
    present = {r[0]: r[1] for r in store.db.execute(
        "SELECT i.rowid, i.id FROM images i WHERE i.shard IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM files f WHERE f.image_id = i.id AND f.status='ok')")}
    kk = min(k + 1, int(index.ntotal))
    pairs: dict[tuple[str, str], float] = {}
    for rowids, X in iter_present_vectors(store):
        for start in range(0, len(X), 4096):
            scores, hits = index.search(np.ascontiguousarray(X[start:start + 4096]), kk)
            for me, srow, hrow in zip(rowids[start:start + 4096], scores, hits):
                a = present[int(me)]
                for s, h in zip(srow, hrow):
                    if s < 1.0 - threshold:
                        break  # hits come best first
                    b = present.get(int(h))
                    if b is None or b == a:
                        continue
                    key = (a, b) if a < b else (b, a)
                    pairs[key] = max(pairs.get(key, -1.0), float(s))
    return pairs


# -- groups --------------------------------------------------------------------------------
def find_groups(store: Store, *, threshold: float = DEFAULT_THRESHOLD,
                max_hash_distance: int = DEFAULT_MAX_HASH_DISTANCE, min_match: float = DEFAULT_MIN_MATCH,
                max_colour_change: float = DEFAULT_MAX_COLOUR_CHANGE, k: int = NEIGHBOURS) -> list[Group]:
    """Groups of files that hold one picture: exact copies share an image id; near-copies are
    neighbours closer than `threshold` whose hashes differ by at most `max_hash_distance` bits,
    whose aligned pictures correlate at least `min_match` and in which no cell's colour changed by
    more than `max_colour_change` (see organizer.discover.duplicates_verify)."""
    if not 0.0 <= threshold < 1.0:
        raise StoreError(f"--threshold {threshold} is a cosine distance: use a value in [0, 1), e.g. 0.35")
    if not 0 <= max_hash_distance <= 64:
        raise StoreError(f"--max-hash-distance {max_hash_distance} counts differing bits of 64: use 0..64")
    if not 0.0 <= max_colour_change <= 442:
        raise StoreError(f"--max-colour-change {max_colour_change} is an RGB distance: use 0..442, e.g. 20")
    files: dict[str, list[tuple[str, int]]] = {}
    for path, image_id, size in store.db.execute(
            "SELECT path, image_id, size FROM files WHERE status='ok' AND image_id IS NOT NULL"):
        files.setdefault(image_id, []).append((path, size))
    parent = {i: i for i in files}

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    candidates = near_pairs(store, threshold, k) if threshold > 0 else {}
    hashes = image_hashes(store, [i for pair in candidates for i in pair])
    checker = Checker(store)

    def same_picture(a: str, b: str) -> tuple[bool, float]:
        match, colour = checker.check(a, b)
        return match >= min_match and colour <= max_colour_change, match

    confirmed = []
    for (a, b), s in sorted(candidates.items()):
        if a not in hashes or b not in hashes or hamming(hashes[a], hashes[b]) > max_hash_distance:
            continue
        ok, match = same_picture(a, b)
        if ok:
            confirmed.append((match, a, b))
    # Strongest links first, and two groups join only when their first members pass too: a
    # chain of look-alikes (each close to the next, the ends different photos) stays apart.
    for match, a, b in sorted(confirmed, reverse=True):
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        if (ra not in (a, b) or rb not in (a, b)) and not same_picture(ra, rb)[0]:
            continue
        parent[rb] = ra
    components: dict[str, list[str]] = {}
    for i in files:
        components.setdefault(root(i), []).append(i)
    dims = {r[0]: (r[1] or 0, r[2] or 0) for r in store.db.execute("SELECT id, width, height FROM images")}
    groups = []
    for ids in components.values():
        members = [Member(path, i, *dims.get(i, (0, 0)), size) for i in ids for path, size in files[i]]
        if len(members) < 2:
            continue
        # Keep the largest picture, then the largest file (less compression), then the shortest path.
        members.sort(key=lambda m: (-m.width * m.height, -m.size, len(m.path), m.path))
        members[0].best = True
        groups.append(Group(0, "exact" if len(ids) == 1 else "near", members[0].path, members))
    _fill_distances(store, groups, hashes, checker)
    checker.save()
    groups.sort(key=lambda g: (-len(g.members), g.best))
    for n, g in enumerate(groups, 1):
        g.group = n
    return groups


def _fill_distances(store: Store, groups: list[Group], hashes: dict[str, bytes], checker: Checker) -> None:
    from organizer.store.vectors import load_vectors

    near = [g for g in groups if g.kind == "near"]
    ids = sorted({m.image_id for g in near for m in g.members})
    if not ids:
        return
    _, X = load_vectors(store, ids)
    row = {i: n for n, i in enumerate(ids)}
    for g in near:
        best = g.members[0].image_id
        for m in g.members[1:]:
            if m.image_id == best:
                continue  # an exact copy of the best copy
            m.similarity = round(float(X[row[m.image_id]] @ X[row[best]]), 4)
            if m.image_id in hashes and best in hashes:
                m.hash_distance = hamming(hashes[m.image_id], hashes[best])
            match, colour = checker.check(m.image_id, best)
            m.match, m.colour_change = round(match, 4), round(min(colour, 999.0), 1)


# -- output --------------------------------------------------------------------------------
CSV_COLUMNS = ["group", "kind", "best", "path", "image_id", "width", "height", "size", "similarity",
               "hash_distance", "match", "colour_change"]


def _outside_library(store: Store, target: str | os.PathLike, what: str) -> Path:
    target = Path(target).expanduser().resolve()
    root = store.library_root
    if root is not None and (target == root or root in target.parents):
        raise StoreError(f"{what} {target} is inside the image folder {root}; organizer never writes there: "
                         "choose a place outside it")
    if target == store.root or store.root in target.parents:
        raise StoreError(f"{what} {target} is inside the store {store.root}: choose a place outside it")
    return target


def write_groups(store: Store, groups: list[Group], out: str | os.PathLike) -> Path:
    """CSV (one row per file) or JSON (one object per group), chosen by the file's extension."""
    path = _outside_library(store, out, "--out")
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for g in groups:
            for m in g.members:
                writer.writerow({"group": g.group, "kind": g.kind, **asdict(m), "best": int(m.best)})
        text = buf.getvalue()
    elif path.suffix.lower() == ".json":
        text = json.dumps([g.to_dict() for g in groups], indent=1)
    else:
        raise StoreError(f"--out {path}: name a .csv or .json file")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


# -- moving copies -------------------------------------------------------------------------
def _move_no_overwrite(src: Path, dst: Path) -> None:
    """Move src to dst; FileExistsError if dst exists. A hard link claims dst atomically; across
    file systems the copy is written with O_EXCL. The source goes only once dst is complete."""
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:  # another file system, or one without hard links
        with open(src, "rb") as fin, open(dst, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(src, dst)
    os.unlink(src)


def move_copies(store: Store, groups: list[Group], dest: str | os.PathLike) -> dict:
    """Move every non-best member of `groups` to dest/<its relative path>. Returns
    {"moved": [[path, dest]], "skipped": [[path, reason]]}."""
    root = store.library_root
    if root is None:
        raise StoreError("the store has no indexed folder: run `organizer index FOLDER` first")
    target = _outside_library(store, dest, "--move-to")
    if target.exists() and not target.is_dir():
        raise StoreError(f"--move-to {target} is a file, not a folder")
    known = {r[0]: (r[1], r[2]) for r in store.db.execute("SELECT path, size, mtime_ns FROM files WHERE status='ok'")}
    moved, skipped = [], []
    for g in groups:
        for m in g.members:
            if m.best:
                continue
            src, dst = root / m.path, target / m.path
            if m.path not in known:
                skipped.append([m.path, "no longer in the library (run `organizer duplicates` again)"])
                continue
            try:
                st = os.lstat(src)
            except OSError:
                skipped.append([m.path, "file not found (run `organizer index` to refresh the library)"])
                continue
            if (st.st_size, st.st_mtime_ns) != known[m.path]:
                skipped.append([m.path, "changed since it was indexed (run `organizer index` first)"])
                continue
            try:
                _move_no_overwrite(src, dst)
            except FileExistsError:
                skipped.append([m.path, f"{dst} already exists; nothing overwritten"])
                continue
            except OSError as e:
                skipped.append([m.path, f"cannot move: {e.strerror or e}"])
                continue
            now = time.time()
            with store.transaction():
                store.db.execute("UPDATE files SET status='missing', error=?, last_seen=? WHERE path=?",
                                 (f"moved to {dst} as a duplicate of {g.best}", now, m.path))
                store.db.execute("INSERT INTO duplicate_moves(path, image_id, dest, moved_at) VALUES(?,?,?,?)",
                                 (m.path, m.image_id, str(dst), now))
            moved.append([m.path, str(dst)])
    if moved:
        with store.transaction():
            store.bump_version()  # the search index must drop images no present file shows any more
    return {"moved": moved, "skipped": skipped}
