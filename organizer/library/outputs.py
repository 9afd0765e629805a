"""Finding and taking out: similar images and text search, CSV/JSON rows, XMP sidecars, folders,
a portable model, the HTTP API, watching a folder, and explanations of a prediction."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from organizer.store import StoreError, atomic_write

OVERLAY_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
COLUMNS = ["path", "image_id", "cluster", "label", "label_source", "predicted", "confidence", "width", "height",
           "tags", "predicted_tags"]


class OutputsMixin:
    COLUMNS = COLUMNS

    # -- search: each hit is (path, image id, cosine similarity) -------------------------
    def similar(self, target: str, k: int = 10) -> list[tuple[str, str, float]]:
        """Images most like a library image (path or id) or any image file."""
        image_id = self._find_image(target)
        if image_id:
            return self.similar_to_id(image_id, k)
        if os.path.isfile(target):
            return self.similar_to_bytes(Path(target).read_bytes(), k, name=target)
        raise StoreError(f"{target} is neither a path in the library, an image id, nor a file")

    def similar_to_id(self, image_id: str, k: int = 10) -> list[tuple[str, str, float]]:
        from organizer.search import query
        from organizer.store.vectors import load_vectors

        image_id = self.check_image_id(image_id)
        _, vec = load_vectors(self.store, [image_id])
        return self._with_paths(query(self.store, vec, k, exclude={image_id})[0])

    def similar_to_bytes(self, data: bytes, k: int = 10, *, name: str = "upload") -> list[tuple[str, str, float]]:
        """Library images most like an image given as bytes (nothing is written anywhere)."""
        from organizer.ingest.decode import DecodeError, decode_image
        from organizer.search import query

        embedder = self.embedder()
        try:
            image = decode_image(data, name=name, min_side=embedder.preprocess.size).image
        except DecodeError as e:
            raise StoreError(str(e)) from None
        vec = embedder.embed_arrays(embedder.preprocess(image)[None])[0]
        return self._with_paths(query(self.store, vec, k)[0])

    def search_text(self, text: str, k: int = 10) -> list[tuple[str, str, float]]:
        from organizer.search import query

        embedder = self.embedder()
        if not getattr(embedder, "has_text", False):
            raise StoreError(f"text search needs a CLIP backbone; this store uses {self.store.backbone} "
                             "(index into a new store with --backbone clip)")
        return self._with_paths(query(self.store, embedder.embed_text([text]), k)[0])

    def _with_paths(self, hits):
        paths = self.store.primary_paths([h[0] for h in hits])
        return [(paths.get(i, ""), i, round(s, 4)) for i, s in hits]

    # -- rows: one per present file ---------------------------------------------------------
    def export_rows(self) -> list[dict]:
        from organizer.learn.tags import export_columns

        store = self.store
        clusters = store.cluster_assignments()
        labels = {r[0]: (r[1], r[2]) for r in store.db.execute("SELECT image_id, name, source FROM labels")}
        preds = {r[0]: (r[1], r[2]) for r in store.db.execute("SELECT image_id, label, confidence FROM predictions")}
        no_tags = {"tags": "", "predicted_tags": ""}
        tags = export_columns(store)
        rows = []
        for path, image_id, width, height in store.db.execute(
                "SELECT f.path, f.image_id, i.width, i.height FROM files f JOIN images i ON i.id = f.image_id "
                "WHERE f.status='ok' ORDER BY f.path"):
            label, source = labels.get(image_id, ("", ""))
            pred, conf = preds.get(image_id, ("", None))
            rows.append({"path": path, "image_id": image_id, "cluster": clusters.get(image_id, (-1, 0))[0],
                         "label": label, "label_source": source, "predicted": pred,
                         "confidence": "" if conf is None else round(conf, 4), "width": width, "height": height,
                         **tags.get(image_id, no_tags)})
        return rows

    def export_bytes(self, fmt: str) -> bytes:
        """The rows as CSV or JSON bytes: what `organizer export` writes and the app's download gives."""
        return _serialize(self.export_rows(), fmt)

    def outside_library(self, out: str | os.PathLike) -> Path:
        """`out` resolved, refused when it lies inside the image folder (organizer never writes there)."""
        out = Path(out).expanduser().resolve()
        root = self.store.library_root
        if root is not None and (out == root or root in out.parents):
            raise StoreError(f"{out} is inside the image folder {root}; organizer never writes there")
        return out

    def export(self, fmt: str, out: str | os.PathLike) -> int:
        out = self.outside_library(out)
        rows = self.export_rows()
        data = _serialize(rows, fmt)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda f: f.write(data))
        return len(rows)

    # -- leaving the tool: sidecars, folders, a portable model, an API, watching ------------
    def export_xmp(self, *, only: set[str] | None = None, **options):
        """XMP sidecars with each image's names as keywords (see organizer/export/sidecars.py for
        options); `only`: library paths to limit it to."""
        from organizer.export.sidecars import export_sidecars

        rows = self.export_rows()
        if only is not None:
            rows = [r for r in rows if r["path"] in only]
        return export_sidecars(rows, self.store.library_root, **options)

    def export_folders(self, out, *, link: str = "symbolic"):
        from organizer.export.folders import export_folders

        return export_folders(self.export_rows(), self.store.library_root, out, link=link)

    def export_model(self, out, *, model_id: int | None = None) -> dict:
        from organizer.export.portable import export_model

        return export_model(self.store, out, model_id=model_id)

    def api(self, *, token: str | None = None, **limits):
        """The prediction API as an ASGI app (FastAPI), for `organizer serve` or any ASGI server."""
        from organizer.export.serve import create_app

        return create_app(self.store.root, token=token, **limits)

    def serve(self, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None, **limits) -> None:
        """Serve the prediction API until interrupted (other than loopback only with a token). The
        server opens its own read-only connections, so this Library's is closed first."""
        from organizer.export.serve import serve

        root = self.store.root
        self.close()
        serve(root, host=host, port=port, token=token, **limits)

    def watch(self, folder, **options) -> int:
        from organizer.export.watch import watch

        return watch(self, folder, **options)

    def explain(self, target: str, label: str | None = None, *, max_side: int | None = None, method: str = "auto"):
        """Heatmap of where the current model finds `label` (default: its prediction) in a library
        image (path or id) or any image file: an `organizer.learn.explain.Explanation`."""
        from organizer.learn.explain import explain

        return explain(self, target, label, max_side=max_side, method=method)

    def explanation_outputs(self, source: str, *, out=None, out_map=None) -> dict:
        """Where save_explanation would write, checked: `out` an image (.png, .jpg, .webp) and
        `out_map` a .npy, neither in the image folder nor the image itself."""
        dests = {}
        for key, name, value, ok in (("out", "--out", out, tuple(OVERLAY_FORMATS)),
                                     ("out_map", "--out-map", out_map, (".npy",))):
            if not value:
                continue
            dest = self.outside_library(value)  # the image folder is never written to
            if dest.exists() and Path(source).exists() and dest.samefile(source):
                raise StoreError(f"{name} {value} is the image being explained; choose another file")
            if dest.suffix.lower() not in ok:
                raise StoreError(f"{name} {value}: use a {' or '.join(ok)} file name")
            dests[key] = dest
        return dests

    def save_explanation(self, e, *, out=None, out_map=None) -> dict:
        """Write an explanation: `out` the image at full resolution under its heatmap, `out_map` the
        map as float32 .npy in [0, 1]. Returns {"out": path, "out_map": path} of what was written."""
        import numpy as np

        from organizer.ingest.decode import DecodeError, decode_image
        from organizer.learn.explain import overlay_bytes

        dests = self.explanation_outputs(e.source, out=out, out_map=out_map)
        if "out" in dests:
            try:  # full resolution this time (min_side 0: no reduction while decoding)
                image = decode_image(Path(e.source).read_bytes(), name=e.source, min_side=0).image
            except (OSError, DecodeError) as err:
                raise StoreError(str(err)) from None
            data = overlay_bytes(image, e.heatmap, OVERLAY_FORMATS[dests["out"].suffix.lower()])
            dests["out"].parent.mkdir(parents=True, exist_ok=True)
            atomic_write(dests["out"], lambda f: f.write(data))
        if "out_map" in dests:
            dests["out_map"].parent.mkdir(parents=True, exist_ok=True)
            atomic_write(dests["out_map"], lambda f: np.save(f, e.heatmap.astype(np.float32), allow_pickle=False))
        return dests

    def explained_thumbnail(self, image_id: str, label: str | None = None, *, max_side: int = 256) -> bytes | None:
        """PNG of an image's thumbnail under the heatmap of `label` (default: the prediction); None when
        the image has no thumbnail or its file cannot be read (the plain thumbnail is all there is)."""
        import io as _io

        from PIL import Image

        from organizer.learn.explain import overlay_bytes

        thumb = self.thumbnails([image_id]).get(image_id)
        if thumb is None:
            return None
        try:
            e = self.explain(image_id, label, max_side=max_side)
        except StoreError:
            return None
        return overlay_bytes(Image.open(_io.BytesIO(thumb)), e.heatmap)


def _serialize(rows: list[dict], fmt: str) -> bytes:
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().encode("utf-8")
    if fmt == "json":
        return json.dumps(rows, indent=1).encode("utf-8")
    raise StoreError(f"unknown export format {fmt!r}: use csv or json")
