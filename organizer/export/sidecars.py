"""`organizer export --format xmp`: one XMP sidecar per image with its names as keywords.

The default target is a mirror tree under --out. Writing next to the originals is the one
place organizer writes in the library folder: only with beside_originals, only `.xmp` files,
never through a symbolic link and never outside the folder; a dry run lists every file first,
and `remove` takes our keywords out again (deleting the sidecars that held nothing else and
that we created)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from organizer.export import xmp
from organizer.store import StoreError, atomic_write

WHAT = ("labels", "predicted", "tags")
NAMINGS = ("ext", "stem")


@dataclass
class SidecarReport:
    target: str                                              # the folder sidecars go to
    actions: list[tuple[str, str]] = field(default_factory=list)  # (create|update|clean|delete, sidecar path)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    shared: int = 0                                          # sidecars two images share (--naming stem)
    dry_run: bool = False

    def count(self, action: str) -> int:
        return sum(1 for a, _ in self.actions if a == action)

    def summary(self) -> str:
        verb = "would write" if self.dry_run else "wrote"
        return (f"{verb} {self.count('create')} new and {self.count('update')} updated sidecars, "
                f"cleaned {self.count('clean')}, deleted {self.count('delete')}, {self.unchanged} unchanged, "
                f"{len(self.skipped)} skipped (in {self.target})")


def parse_what(what) -> tuple[str, ...]:
    items = [w.strip() for w in (what.split(",") if isinstance(what, str) else what) if w.strip()]
    bad = [w for w in items if w not in WHAT]
    if bad or not items:
        raise StoreError(f"--what {','.join(items) or '(nothing)'}: use a comma-separated list of {', '.join(WHAT)}")
    return tuple(items)


def names_of(row: dict, what: tuple[str, ...], min_confidence: float | None) -> set[str]:
    """The names a row of Library.export_rows carries, as keywords. A person's or a cluster's
    label wins over the model's guess for the same image (both would only confuse)."""
    names = set()
    if "labels" in what and row["label"]:
        names.add(row["label"])
    if "predicted" in what and not (row["label"] and "labels" in what):
        conf = row["confidence"]
        if row["predicted"] and row["predicted"] != "unknown" and conf != "" and \
                (min_confidence is None or float(conf) >= min_confidence):
            names.add(row["predicted"])
    if "tags" in what:
        names |= {t for t in (row["tags"] + ";" + row["predicted_tags"]).split(";") if t}
    return names


def sidecar_name(rel: str, naming: str) -> str:
    if naming == "ext":
        return rel + ".xmp"
    stem, dot, _ = rel.rpartition(".")
    return (stem if dot and "/" not in rel[len(stem):] else rel) + ".xmp"


def export_sidecars(rows: list[dict], root: Path | None, *, out=None, beside_originals: bool = False,
                    naming: str = "ext", what=WHAT, min_confidence: float | None = None,
                    prefix: str = "organizer", dry_run: bool = False, remove: bool = False) -> SidecarReport:
    if naming not in NAMINGS:
        raise StoreError(f"--naming {naming!r}: use ext (photo.jpg.xmp) or stem (photo.xmp)")
    what = parse_what(what)
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise StoreError(f"--min-confidence {min_confidence}: a confidence is between 0 and 1")
    if beside_originals == (out is not None):
        raise StoreError("say where the sidecars go: --out DIR (a mirror tree) or --beside-originals")
    if root is None:
        raise StoreError("the store has no library folder yet: run `organizer index FOLDER` first")
    root = root.resolve()
    if beside_originals:
        base = root
    else:
        base = Path(out).expanduser().resolve()
        if base == root or root in base.parents:
            raise StoreError(f"{base} is inside the image folder {root}; use --beside-originals to write there")
    prefix = prefix.strip().strip("|/")
    wanted: dict[str, set[str]] = {}
    sources: dict[str, list[str]] = {}
    for row in rows:
        side = sidecar_name(row["path"], naming)
        wanted.setdefault(side, set()).update(() if remove else names_of(row, what, min_confidence))
        sources.setdefault(side, []).append(row["path"])
    report = SidecarReport(str(base), dry_run=dry_run)
    report.shared = sum(1 for s in sources.values() if len(s) > 1)
    for side, names in sorted(wanted.items()):
        _one(report, base, side, names, prefix, beside_originals, root, sources[side][0], dry_run)
    return report


def _one(report, base: Path, side: str, names: set[str], prefix: str, beside: bool, root: Path, image: str,
         dry_run: bool) -> None:
    target = base / side
    shown = str(target)
    if beside:
        if not (root / image).is_file():
            report.skipped.append((shown, "the image is not there any more"))
            return
        parent = target.parent.resolve()
        if parent != root and root not in parent.parents:
            report.skipped.append((shown, "its folder leads outside the library (a symbolic link)"))
            return
    if target.is_symlink():
        report.skipped.append((shown, "is a symbolic link; organizer does not write through links"))
        return
    if target.exists() and not target.is_file():
        report.skipped.append((shown, "exists and is not a file"))
        return
    try:
        old = target.read_bytes() if target.exists() else None
    except OSError as e:
        report.skipped.append((shown, f"cannot be read ({e.strerror or e})"))
        return
    if old is None and not names:
        return  # nothing to say about this image and no sidecar to clean
    try:
        new, foreign = xmp.merge(old, names, prefix, name=shown)
    except xmp.XmpError as e:
        report.skipped.append((shown, str(e).removeprefix(shown + ": ")))
        return
    if old is not None and new == old:
        report.unchanged += 1
        return
    if not names and not foreign and b'x:xmptk="organizer"' in old:
        action = "delete"  # we made it and nothing else is in it: as if never written
    elif old is None:
        action = "create"
    else:
        action = "update" if names else "clean"
    report.actions.append((action, shown))
    if dry_run:
        return
    if action == "delete":
        target.unlink()
        return
    if not beside:
        target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda f: f.write(new))
    if old is not None:
        return
    try:  # a new sidecar takes the image's permissions (readable by whoever reads the photo)
        os.chmod(target, (root / image).stat().st_mode & 0o666)
    except OSError:
        pass
