"""`organizer export --format folders`: one folder per label, made of links to the originals.

Which folder: the name a person or a cluster gave; else the model's label; `unknown/` where
the model was not sure; `unsorted/` where there is neither a name nor a prediction.

File names stay as they are unless two images in one folder share one; then the path inside
the library, with "/" turned into " - ", keeps them apart (the same rule every run, so
re-running gives the same names). A manifest (.organizer-folders.json) records what was
made, so a re-run adds, moves and removes only its own entries and never a file it did not
make. The originals are never written: a symbolic link points at them; a hard link is the
same file (an app that edits it in place edits the original, hence not the default); a copy
is independent."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from organizer.store import StoreError, atomic_write, replace_file

LINKS = ("symbolic", "hard", "copy")
MANIFEST = ".organizer-folders.json"


@dataclass
class FoldersReport:
    out: str
    folders: dict[str, int] = field(default_factory=dict)   # folder -> files in it
    added: int = 0
    removed: int = 0
    kept: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{sum(self.folders.values())} files in {len(self.folders)} folders under {self.out}: "
                f"{self.added} added, {self.removed} removed, {self.kept} already there, {len(self.skipped)} skipped")


def folder_of(row: dict) -> str:
    if row["label"]:
        return row["label"]
    if row["predicted"]:
        return row["predicted"]  # 'unknown' when below the threshold
    return "unsorted"


def safe_folder(name: str) -> str:
    """A label as one folder name: no separators, no '.'/'..', no control characters."""
    cleaned = "".join("_" if c in "/\\\0" or not c.isprintable() else c for c in name).strip()
    return cleaned if cleaned not in ("", ".", "..") else "_"


def layout(rows: list[dict]) -> dict[str, str]:
    """{path under out: library path} for every row."""
    by_folder: dict[str, list[str]] = {}
    for row in rows:
        by_folder.setdefault(safe_folder(folder_of(row)), []).append(row["path"])
    out = {}
    for folder, paths in by_folder.items():
        counts: dict[str, int] = {}
        for p in paths:
            base = p.rsplit("/", 1)[-1]
            counts[base] = counts.get(base, 0) + 1
        for p in paths:
            base = p.rsplit("/", 1)[-1]
            out[f"{folder}/{base if counts[base] == 1 else p.replace('/', ' - ')}"] = p
    return out


def _is_ours(dest: Path, entry: dict, src: Path) -> bool:
    """Whether `dest` is still what a previous run made (else it is a person's file: leave it)."""
    try:
        if entry["link"] == "symbolic":
            return dest.is_symlink() and os.readlink(dest) == entry["target"]
        if dest.is_symlink() or not dest.is_file():
            return False
        st = dest.stat()
        if entry["link"] == "hard":
            return (st.st_dev, st.st_ino) == tuple(entry["inode"])
        return st.st_size == entry["size"] and st.st_mtime_ns == entry["mtime_ns"]
    except (OSError, KeyError, TypeError):
        return False


def export_folders(rows: list[dict], root: Path | None, out, *, link: str = "symbolic") -> FoldersReport:
    if link not in LINKS:
        raise StoreError(f"--link {link!r}: use symbolic, hard or copy")
    if root is None:
        raise StoreError("the store has no library folder yet: run `organizer index FOLDER` first")
    root = root.resolve()
    out = Path(out).expanduser().resolve()
    if out == root or root in out.parents or out in root.parents:
        raise StoreError(f"{out} and the image folder {root} overlap; choose a folder outside the library")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    try:
        old = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    except (OSError, ValueError):
        raise StoreError(f"{manifest_path} is damaged; delete it (and the folders it made) to start again") from None
    if old and not isinstance(old.get("entries"), dict):
        raise StoreError(f"{manifest_path} is not an organizer manifest; choose another --out")
    entries = old.get("entries", {})
    wanted = layout(rows)
    report = FoldersReport(str(out))
    # 1. take away what is ours and no longer wanted there (a changed label, another link kind)
    for rel, entry in list(entries.items()):
        src = root / entry.get("source", "")
        keep = wanted.get(rel) == entry.get("source") and entry.get("link") == link
        dest = out / rel
        if keep and _is_ours(dest, entry, src) and (link != "hard" or _same_file(dest, src)):
            continue
        if _is_ours(dest, entry, src):
            dest.unlink()
            report.removed += 1
            _prune(dest.parent, out)
        del entries[rel]
    # 2. make what is missing
    for rel, source in sorted(wanted.items()):
        dest = out / rel
        if rel in entries:
            report.kept += 1
            continue
        src = root / source
        if dest.exists() or dest.is_symlink():
            report.skipped.append((str(dest), "a file organizer did not make is already there"))
            continue
        if not src.is_file():
            report.skipped.append((str(dest), f"the original {source} is not there any more"))
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            entries[rel] = _make(src, dest, link, source)
        except OSError as e:
            hint = "; use --link symbolic or --link copy" if link == "hard" else ""
            raise StoreError(f"cannot make {dest} ({e.strerror or e}){hint}") from None
        report.added += 1
        # the manifest follows every hundred files, so an interrupted run still knows what it made
        if report.added % 100 == 0:
            _save(manifest_path, entries)
    _save(manifest_path, entries)
    for rel in entries:
        folder = rel.split("/", 1)[0]
        report.folders[folder] = report.folders.get(folder, 0) + 1
    return report


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _make(src: Path, dest: Path, link: str, source: str) -> dict:
    entry = {"source": source, "link": link}
    if link == "symbolic":
        os.symlink(src, dest)
        entry["target"] = os.readlink(dest)
    elif link == "hard":
        os.link(src, dest)
        st = dest.stat()
        entry["inode"] = [st.st_dev, st.st_ino]
    else:
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copy2(src, tmp)
        replace_file(tmp, dest)
        st = dest.stat()
        entry.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    return entry


def _save(path: Path, entries: dict) -> None:
    # sources are stored relative to the library, so a manifest reads the same after the library moves
    atomic_write(path, lambda f: f.write(json.dumps({"format": "organizer-folders-v1", "entries": entries},
                                                     indent=0, sort_keys=True).encode()))


def _prune(folder: Path, out: Path) -> None:
    """Remove folders emptied by a removal, up to `out` (never a folder that still holds anything)."""
    while folder != out and out in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
