"""The part of `Library` every other part stands on: the store, indexing, ids, thumbnails, status."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from organizer.library.results import ImageInfo, Overview, Status
from organizer.store import Store, StoreError, default_store_dir

ID_RE = re.compile(r"[0-9a-f]{32}")
ENGINES = ("local", "ray")


class LibraryCore:
    def __init__(self, store_dir: str | os.PathLike | None = None, *, create: bool = True):
        self.store = Store(store_dir or default_store_dir(), create=create)

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- indexing -------------------------------------------------------------------
    def index(self, folder, *, engine: str = "local", ray_address: str | None = None, **options):
        """Index new and changed files of `folder` (options: see ingest.indexer.index_folder).
        engine "ray" decodes and embeds on a Ray cluster's actors (docs/SCALING.md)."""
        from organizer.ingest.indexer import check_folder, index_folder

        if engine not in ENGINES:
            raise StoreError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
        if engine == "ray":
            from organizer.engine_ray.index import ray_producer

            check_folder(self.store, Path(folder).expanduser())  # a wrong folder fails before the cluster starts
            options["produce"] = ray_producer(ray_address)  # joins (or starts) the cluster now
        return index_folder(self.store, folder, **options)

    def embedder(self):
        from organizer.embed import get_embedder

        if not self.store.backbone:
            raise StoreError("the store has no images yet: run `organizer index FOLDER` first")
        return get_embedder(self.store.backbone, store_backbone=self.store.backbone, quiet=True)

    def _norms(self, ids: list[str]) -> np.ndarray:
        lookup = {r[0]: r[1] or 1.0 for r in self.store.db.execute("SELECT id, feature_norm FROM images")}
        return np.array([lookup[i] for i in ids], np.float32)

    # -- ids and paths --------------------------------------------------------------
    def check_image_id(self, value: object) -> str:
        """The id if it names an image of this store; anything else (paths, '../', junk) is refused."""
        text = str(value or "").strip().lower()
        if not ID_RE.fullmatch(text):
            raise StoreError("not an image id (expected 32 hexadecimal characters)")
        if not self.store.db.execute("SELECT 1 FROM images WHERE id=?", (text,)).fetchone():
            raise StoreError("unknown image id: no image in this library has it")
        return text

    def _known_ids(self, image_ids) -> list[str]:
        return [self.check_image_id(i) for i in dict.fromkeys(image_ids)]

    def resolve_paths(self, paths: list[str]) -> list[str]:
        """Image ids for paths relative to the indexed folder (or absolute paths inside it)."""
        root = self.store.library_root
        ids, unknown = [], []
        for p in paths:
            rel = p
            if root is not None and os.path.isabs(p):
                try:
                    rel = Path(p).resolve().relative_to(root).as_posix()
                except ValueError:
                    pass
            image_id = self.store.path_to_image_id(rel)
            (ids.append(image_id) if image_id else unknown.append(p))
        if unknown:
            raise StoreError(f"not in the library: {unknown[0]}" + (f" and {len(unknown) - 1} more" if len(unknown) > 1
                                                                      else "") +
                             " (paths are relative to the indexed folder; run `organizer index` for new files)")
        return ids

    def _find_image(self, target: str) -> str | None:
        if self.store.db.execute("SELECT 1 FROM images WHERE id=?", (target,)).fetchone():
            return target
        try:
            return self.resolve_paths([target])[0]
        except StoreError:
            return None

    def find_paths(self, fragment: str, limit: int = 50) -> list[tuple[str, str]]:
        """(image id, path) of library files whose path contains `fragment`: a lookup, never a file read."""
        like = "%" + fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return [(r[0], r[1]) for r in self.store.db.execute(
            "SELECT image_id, MIN(path) FROM files WHERE status='ok' AND image_id IS NOT NULL AND path LIKE ? "
            "ESCAPE '\\' GROUP BY image_id ORDER BY MIN(path) LIMIT ?", (like, limit))]

    def image_path(self, image_id: str) -> Path | None:
        """The file of an image, looked up by id only (never from a user-typed path)."""
        rel = self.store.primary_paths([image_id]).get(image_id)
        root = self.store.library_root
        return (root / rel) if rel and root else None

    def image_info(self, image_id: str) -> ImageInfo:
        store = self.store
        image_id = self.check_image_id(image_id)
        row = store.db.execute("SELECT width, height, format FROM images WHERE id=?", (image_id,)).fetchone()
        label = store.db.execute("SELECT name, source FROM labels WHERE image_id=?", (image_id,)).fetchone()
        pred = store.db.execute("SELECT label, confidence FROM predictions WHERE image_id=?", (image_id,)).fetchone()
        return ImageInfo(image_id, store.primary_paths([image_id]).get(image_id, ""), row[0], row[1], row[2],
                         store.cluster_assignments().get(image_id, (-1, 0.0))[0],
                         label[0] if label else None, label[1] if label else None,
                         pred[0] if pred else None, pred[1] if pred else None)

    # -- thumbnails ------------------------------------------------------------------
    def thumbnails(self, image_ids: list[str]) -> dict[str, bytes]:
        """Thumbnails by id (stored at indexing, or made now from the original), never the originals."""
        from organizer.ingest.thumbnails import thumbnails

        return thumbnails(self.store, image_ids)

    def thumbnail(self, image_id: str) -> bytes | None:
        return self.thumbnails([self.check_image_id(image_id)]).get(image_id)

    # -- overview -------------------------------------------------------------------
    @property
    def backbone(self) -> str | None:
        """The image model every vector of this store comes from (None before the first index)."""
        return self.store.backbone

    def counts(self) -> dict[str, int]:
        """images, labeled, error, missing, ... (see Store.counts)."""
        return self.store.counts()

    def version(self) -> tuple:
        """Changes whenever anything a person or a model could see changes (a name, a group, a model,
        new images): a key for caching what is derived from the store (the review queue, label issues)."""
        db = self.store.db
        return (tuple(db.execute("SELECT MAX(id), MAX(undone_at) FROM history").fetchone()),
                db.execute("SELECT MAX(id) FROM models WHERE current=1").fetchone()[0],
                self.store.current_clustering_id(), tuple(db.execute("SELECT COUNT(*), MAX(rowid), MAX(created_at) FROM labels").fetchone()),
                db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def has_groups(self) -> bool:
        return self.store.current_clustering_id() is not None

    def labels(self) -> dict[str, str]:
        """{image id: name} of every named image."""
        return self.store.labels()

    def paths(self, image_ids: list[str] | None = None) -> dict[str, str]:
        """{image id: its first path in the library} (relative to the indexed folder)."""
        return self.store.primary_paths(image_ids)

    def status(self) -> Status:
        counts = self.store.counts()
        return Status(str(self.store.root), str(self.store.library_root or ""), self.store.backbone,
                      counts["images"], counts["labeled"], counts["ok"], counts["error"], counts["missing"],
                      self.store.db.execute("SELECT COUNT(*) FROM clusterings").fetchone()[0], self.current_model())

    def errors(self) -> list[tuple[str, str]]:
        """(path, why) of every file that could not be indexed."""
        return [(r[0], r[1]) for r in self.store.db.execute(
            "SELECT path, error FROM files WHERE status='error' ORDER BY path")]

    def overview(self) -> Overview:
        """status() plus what the Library page shows: failed files, recent groupings and models, names."""
        import json

        clusterings = [{**dict(r), "params": json.loads(r["params"])} for r in self.store.db.execute(
            "SELECT id, created_at, params, seed, n_images, n_clusters FROM clusterings ORDER BY id DESC LIMIT 5")]
        return Overview(self.status(), self.errors(), clusterings, self.models()[::-1][:5], self.label_names(),
                        len({c for c, _ in self.store.cluster_assignments().values() if c >= 0}))

    def label_names(self) -> list[tuple[str, int]]:
        """Names in use, most used first."""
        return [(r[0], r[1]) for r in self.store.db.execute(
            "SELECT name, COUNT(*) FROM labels GROUP BY name ORDER BY COUNT(*) DESC, name")]


def clean_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not name:
        raise StoreError("a name cannot be empty")
    if name.lower() == "unknown":
        raise StoreError("'unknown' is reserved for predictions below the confidence threshold")
    if len(name) > 200:
        raise StoreError("a name is limited to 200 characters")
    return name
