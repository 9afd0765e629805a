"""`organizer repair`: check everything the store keeps on disk and mend what can be mended.

The SQLite database and the vector shards are the store's data; the search index, the ONNX
exports and trained models are derived from them. A derived file that is damaged is removed
and rebuilt (or, for a model, named so it can be trained again). A damaged shard cannot be
rebuilt from itself: its rows are dropped and its images embedded again from their files,
which the indexer does when it finds content without a vector.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from organizer.store import Store, StoreError


@dataclass
class RepairReport:
    database: str = "ok"
    bad_shards: list[tuple[int, str]] = field(default_factory=list)
    images_dropped: int = 0        # images whose vector was in a bad shard
    images_reembedded: int = 0
    images_pending: int = 0        # still without a vector (their files are not reachable now)
    search_index: str = "not built"
    onnx_removed: list[str] = field(default_factory=list)
    model: str = "none"
    temp_files_removed: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"database: {self.database}"]
        if self.bad_shards:
            out.append("vector files damaged: " + ", ".join(f"{s:06d}.f16 ({why})" for s, why in self.bad_shards))
            out.append(f"  {self.images_dropped} images lost their vectors; {self.images_reembedded} re-embedded "
                       f"from their files, {self.images_pending} still waiting")
        else:
            out.append("vector files: ok")
        out.append(f"search index: {self.search_index}")
        out.append("onnx cache: " + ("removed damaged " + ", ".join(self.onnx_removed) + " (exported again on next use)"
                                     if self.onnx_removed else "ok"))
        out.append(f"model: {self.model}")
        if self.temp_files_removed:
            out.append(f"removed {self.temp_files_removed} leftover temporary file(s)")
        out.extend(self.notes)
        return out


def repair(store: Store, *, workers: int | None = None, progress=None) -> RepairReport:
    from organizer.ingest.indexer import CACHE_DIR, StoreLock, index_folder
    from organizer.store.vectors import check_shards, drop_shards, remove_orphans

    report = RepairReport()
    problems = [r[0] for r in store.db.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        # SQLite holds the labels: nothing here can rebuild it, and guessing would lose more.
        raise StoreError(f"the database {store.root / 'organizer.db'} is damaged ({problems[0]}); "
                         "restore it from a backup (the vector and model files are not enough to rebuild it)")
    with StoreLock(store):
        report.temp_files_removed = remove_orphans(store) + _remove_temp_files(store)
        report.bad_shards = check_shards(store, checksums=True)
        report.images_dropped = drop_shards(store, [s for s, _ in report.bad_shards])
    waiting = _images_without_vectors(store)
    if waiting:
        root = store.library_root
        try:
            if root is None or not root.is_dir():
                raise StoreError(f"the library folder {root} is not reachable")
            index_folder(store, root, backbone=store.backbone or "auto", workers=workers, progress=progress)
        except StoreError as e:
            report.notes.append(f"could not re-embed now: {e}; run `organizer repair` again when the files are back")
        still = _images_without_vectors(store)
        report.images_reembedded = max(0, waiting - still)
        report.images_pending = still
    report.onnx_removed = _check_onnx(store.root / CACHE_DIR)
    report.search_index = _check_search_index(store)
    report.model = _check_model(store)
    return report


def _images_without_vectors(store: Store) -> int:
    """Images that some present file shows but that have no vector (what a dropped shard leaves)."""
    return store.db.execute(
        "SELECT COUNT(*) FROM images i WHERE i.shard IS NULL AND EXISTS "
        "(SELECT 1 FROM files f WHERE f.image_id = i.id AND f.status='ok')").fetchone()[0]


def _remove_temp_files(store: Store) -> int:
    from organizer.ingest.indexer import CACHE_DIR, remove_stale_temps

    removed = remove_stale_temps(store.root / CACHE_DIR / "onnx")  # a killed export's leftovers
    for folder in (store.root, store.models_dir):
        if folder.is_dir():
            for p in folder.glob("*.tmp"):
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def _check_onnx(cache: Path) -> list[str]:
    from organizer.embed.runtime import read_verified

    removed = []
    for path in sorted((cache / "onnx").glob("*.onnx")) if (cache / "onnx").is_dir() else []:
        if read_verified(path) is None:  # removes a file whose size or checksum is off
            removed.append(path.name)
    return removed


def _check_search_index(store: Store) -> str:
    from organizer import search
    from organizer.store.vectors import count_present

    if count_present(store) == 0:
        return "not needed (no vectors)"
    search.forget(store)
    had_file = (store.root / search.INDEX_NAME).exists()
    if search.load_index(store, rebuild=False) is not None:
        return "ok"
    index = search.load_index(store)  # builds from the shards and saves
    state = "damaged or stale, rebuilt" if had_file else "built"
    return f"{state} ({index.ntotal} vectors)"


def _check_model(store: Store) -> str:
    from organizer.learn.model import load_model

    row = store.current_model()
    if row is None:
        return "none trained"
    try:
        model = load_model(store)
    except StoreError as e:
        return f"model {row['id']} cannot be used ({e})"
    return f"model {row['id']} ok ({len(model.classes)} classes)"
