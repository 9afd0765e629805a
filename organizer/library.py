"""The library API: one object per store that the CLI and the app both call.

Every stage lives in its own module; this file only wires them to the store."""
from __future__ import annotations

import collections
import csv
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .store import Store, StoreError, atomic_write, default_store_dir, dumps


@dataclass
class ClusterInfo:
    id: int
    size: int
    suggestions: list[tuple[str, float]]
    label: str | None                 # the name most of its images carry, if any
    labeled: int                      # how many of its images carry a name
    sample_ids: list[str] = field(default_factory=list)
    sample_paths: list[str] = field(default_factory=list)
    level: str = "group"              # group (a flat cluster) | parent (a group of groups) | sub-group
    parent: int = -1                  # the tree node above it (-1: none)
    children: list[int] = field(default_factory=list)   # the tree nodes right below it
    agreement: float | None = None    # how tightly its members agree (share of neighbours inside it)
    look_alike: list[int] = field(default_factory=list)  # clusters that look like the same thing


class Library:
    def __init__(self, store_dir: str | os.PathLike | None = None, *, create: bool = True):
        self.store = Store(store_dir or default_store_dir(), create=create)

    def close(self) -> None:
        self.store.close()

    # -- indexing -------------------------------------------------------------------
    def index(self, folder, **kwargs):
        from .indexer import index_folder

        return index_folder(self.store, folder, **kwargs)

    def embedder(self):
        from .embed import get_embedder

        if not self.store.backbone:
            raise StoreError("the store has no images yet: run `organizer index FOLDER` first")
        return get_embedder(self.store.backbone, store_backbone=self.store.backbone, quiet=True)

    def _norms(self, ids: list[str]) -> np.ndarray:
        lookup = {r[0]: r[1] or 1.0 for r in self.store.db.execute("SELECT id, feature_norm FROM images")}
        return np.array([lookup[i] for i in ids], np.float32)

    # -- clustering -----------------------------------------------------------------
    def cluster(self, *, min_cluster_size: int | None = None, seed: int = 0, suggest: bool = True,
                keep_empty: bool = True, engine: str = "local", ray_address: str | None = None,
                workers: int | None = None, max_fit: int | None = None) -> dict:
        """Group every image anew. keep_empty=False refuses (saving nothing) a grouping that leaves
        every image unsorted, so a person's current groups are not replaced by none. engine "ray"
        assigns the images outside the fitted sample (max_fit, default 20,000) on a Ray cluster."""
        import contextlib

        from .cluster import cluster_vectors
        from .vectors import load_vectors

        if engine not in ("local", "ray"):
            raise StoreError(f"unknown engine {engine!r}: use local or ray")
        if max_fit is not None and max_fit < 50:
            raise StoreError(f"a fit sample of {max_fit} images is too small to find groups in: choose at least 50 "
                             "(default 20,000); nothing was changed")
        if engine == "ray":
            from .engine_ray import cluster_inputs

            ids, X, on = cluster_inputs(self.store, address=ray_address, workers=workers)
        else:
            (ids, X), on = load_vectors(self.store), contextlib.nullcontext()
        if not ids:
            raise StoreError("no embedded images to cluster: run `organizer index FOLDER` first")
        if min_cluster_size is not None and min_cluster_size < 2:
            raise StoreError(f"a smallest group of {min_cluster_size} is not a group: choose at least 2 "
                             "(or leave it automatic); nothing was changed")
        if min_cluster_size is not None and min_cluster_size > max(2, len(ids) // 2):
            raise StoreError(f"a smallest group of {min_cluster_size} cannot be met by {len(ids)} images: "
                             f"choose at most {max(2, len(ids) // 2)} (or automatic); nothing was changed")
        with on:
            result = cluster_vectors(X, min_cluster_size=min_cluster_size, seed=seed,
                                     **({"max_fit": int(max_fit)} if max_fit else {}))
        n_clusters = int(result.labels.max()) + 1 if len(result.labels) and result.labels.max() >= 0 else 0
        if not n_clusters and not keep_empty:
            raise StoreError(f"these settings find no group in {len(ids)} images (all would be unsorted): "
                             "try a smaller group size or automatic; nothing was changed")
        suggestions = {}
        if suggest and n_clusters:
            from .naming import suggest as suggest_names

            suggestions = suggest_names(self.embedder(), X, self._norms(ids), result.labels)
        with self.store.transaction():
            cur = self.store.db.execute(
                "INSERT INTO clusterings(created_at, backbone, params, seed, n_images, n_clusters) VALUES(?,?,?,?,?,?)",
                (time.time(), self.store.backbone, dumps(result.params), seed, len(ids), n_clusters))
            cid = cur.lastrowid
            self.store.record("regroup", f"grouped {len(ids)} images into {n_clusters} clusters "
                              f"({int((result.labels < 0).sum())} unsorted)", [["clustering", cid]])
            nodes = result.nodes if result.nodes is not None else np.full(len(ids), -1)
            self.store.db.executemany(
                "INSERT INTO cluster_members(clustering_id, image_id, cluster, core_cluster, probability, node) "
                "VALUES(?,?,?,?,?,?)",
                [(cid, i, int(c), int(k), float(p), int(v) if v >= 0 else None) for i, c, k, p, v in
                 zip(ids, result.labels, result.core_labels, result.probabilities, nodes)])
            agreement = dict(enumerate(result.agreement))
            self.store.db.executemany(
                "INSERT INTO cluster_nodes(clustering_id, node, parent, level, agreement) VALUES(?,?,?,?,?)",
                [(cid, t["id"], t["parent"], t["level"], agreement.get(t["id"])) for t in result.tree])
            self.store.db.executemany("INSERT INTO cluster_merges(clustering_id, a, b, kappa) VALUES(?,?,?,?)",
                                      [(cid, a, b, k) for a, b, k in result.merges])
            self.store.db.executemany(
                "INSERT INTO cluster_suggestions(clustering_id, cluster, names) VALUES(?,?,?)",
                [(cid, c, json.dumps(names)) for c, names in suggestions.items()])
        unsorted = int((result.labels < 0).sum())
        return {"clustering_id": cid, "images": len(ids), "clusters": n_clusters, "unsorted": unsorted,
                "core_noise": int((result.core_labels < 0).sum()), "params": result.params}

    def clusters(self, *, samples: int = 6, tree: bool = False) -> list[ClusterInfo]:
        """The flat clusters, those that teach a classifier most first (big and tight before small
        and loose: size x agreement), then the unsorted images; tree=True adds the group tree's
        other nodes (parents: groups of groups; sub-groups: parts of a cluster) after them."""
        cid = self.store.current_clustering_id()
        if cid is None:
            return []
        members = collections.defaultdict(list)
        node_of = {}
        for image_id, cluster, prob, node in self.store.db.execute(
                "SELECT image_id, cluster, probability, node FROM cluster_members WHERE clustering_id=? "
                "ORDER BY probability DESC, image_id", (cid,)):
            members[cluster].append(image_id)
            node_of[image_id] = node
        suggestions = {r[0]: [tuple(x) for x in json.loads(r[1])] for r in self.store.db.execute(
            "SELECT cluster, names FROM cluster_suggestions WHERE clustering_id=?", (cid,))}
        nodes = self.store.cluster_tree(cid)
        kids = collections.defaultdict(list)
        for v, (parent, _, _) in nodes.items():
            if parent >= 0:
                kids[parent].append(v)
        alike = collections.defaultdict(list)
        for a, b in self.store.db.execute("SELECT a, b FROM cluster_merges WHERE clustering_id=?", (cid,)):
            alike[a].append(b)
            alike[b].append(a)
        labels = self.store.labels()
        paths = self.store.primary_paths()
        present = set(paths)

        def info(c, ids, level):
            ids = [i for i in ids if i in present]
            names = collections.Counter(labels[i] for i in ids if i in labels)
            top = names.most_common(1)[0] if names else (None, 0)
            parent, _, agree = nodes.get(c, (-1, level, None))
            return ClusterInfo(c, len(ids), suggestions.get(c, []), top[0], sum(names.values()),
                               ids[:samples], [paths[i] for i in ids[:samples]], level, parent,
                               sorted(kids.get(c, [])), agree, sorted(alike.get(c, [])))

        flat = [info(c, members[c], "group") for c in members if c >= 0]
        flat.sort(key=lambda c: (-(c.size * (c.agreement if c.agreement is not None else 1.0)), c.id))
        out = flat + ([info(-1, members[-1], "unsorted")] if -1 in members else [])
        if tree:
            flat_ids = set(members)
            for v in sorted(nodes):
                if v in flat_ids:
                    continue
                level = nodes[v][1]
                if level == "group":  # no longer a cluster: split along the tree (a parent now) or merged away
                    if not any(k in flat_ids for k in kids.get(v, [])):
                        continue
                    level = "parent"
                out.append(info(v, self.store.node_member_ids(v, cid), level))
        return out

    def flat_cluster_ids(self) -> set[int]:
        """Ids of the current flat clusters (-1: unsorted). The app uses it to tell them from tree
        nodes: after a split along the tree the split cluster stays in the tree as a "group" node."""
        cid = self.store.current_clustering_id()
        return {r[0] for r in self.store.db.execute(
            "SELECT DISTINCT cluster FROM cluster_members WHERE clustering_id=?", (cid,))} if cid is not None else set()

    def cluster_members(self, cluster: int) -> list[str]:
        """Images of a flat cluster, or of any node of the group tree (a parent: every image below it)."""
        if self.store.current_clustering_id() is None:
            raise StoreError("no clustering yet: run `organizer cluster` first")
        ids = self.store.cluster_member_ids(cluster) or self.store.node_member_ids(cluster)
        if not ids:
            raise StoreError(f"unknown cluster id {cluster}: see `organizer clusters`")
        return ids

    def name_cluster(self, cluster: int, name: str) -> int:
        """Label every image of the cluster; names a person gave one by one are kept."""
        name = _clean_name(name)
        if cluster < 0:
            raise StoreError("-1 holds the unsorted images, not a cluster: label them with `organizer label`")
        with self.store.action("name", f"named cluster {cluster} “{name}”"):
            return self.store.set_labels(self.cluster_members(cluster), name, "cluster", overwrite_manual=False)

    # -- labels ---------------------------------------------------------------------
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

    def label(self, paths: list[str], name: str, *, source: str = "manual") -> int:
        return self.store.set_labels(self.resolve_paths(paths), _clean_name(name), source)

    def label_ids(self, image_ids: list[str], name: str, *, source: str = "manual") -> int:
        return self.store.set_labels(image_ids, _clean_name(name), source)

    # -- training and prediction --------------------------------------------------
    def train(self, **kwargs) -> dict:
        from .classify import train

        return train(self.store, **kwargs)

    def models(self) -> list[dict]:
        from .versions import list_versions

        return list_versions(self.store)

    def use_model(self, model_id: int) -> None:
        from .versions import use_version

        before = self.store.current_model()
        use_version(self.store, model_id)
        if before is not None and before["id"] != model_id:
            with self.store.transaction():
                self.store.record("model", f"made model {model_id} current (was {before['id']})",
                                  [["model", before["id"]]])

    # -- history --------------------------------------------------------------------
    def history(self, limit: int | None = 20, *, include_undone: bool = False):
        """The changes a person made, newest first (HistoryEntry: id, kind, summary, ...)."""
        from .history import entries

        return entries(self.store, limit, include_undone=include_undone)

    def undo(self, n: int = 1, *, back_to: int | None = None):
        """Undo the last n changes (or all from entry `back_to` on); re-predicts if the model changed."""
        from .history import touches_model, undo

        done = undo(self.store, n, back_to=back_to)
        if touches_model(done, self.store) and self.store.current_model() is not None:
            self.predict()
        return done

    def set_class_threshold(self, name: str, value: float | None) -> dict:
        from .classify import set_class_threshold

        return set_class_threshold(self.store, name, value)

    def label_issues(self, limit: int | None = None, everything: bool = False) -> list[dict]:
        from .label_errors import find_label_errors

        return find_label_errors(self.store, limit=limit, everything=everything)

    def predict(self, *, engine: str = "local", ray_address: str | None = None, workers: int | None = None) -> int:
        """Predict every present image; engine "ray" runs the classifier as Ray tasks over shards."""
        if engine == "ray":
            from .engine_ray import predict_store_ray

            return predict_store_ray(self.store, address=ray_address, workers=workers)
        if engine != "local":
            raise StoreError(f"unknown engine {engine!r}: use local or ray")
        from .classify import predict_store

        return predict_store(self.store)

    def embed_files(self, files: list[str]) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        """Embed files outside the library on the fly: (ok files, vectors, [(file, error)])."""
        from .decode import DecodeError, decode_image

        embedder = self.embedder()
        ok, pixels, errors = [], [], []
        for f in files:
            try:
                data = Path(f).read_bytes()
                pixels.append(embedder.preprocess(decode_image(data, name=f, min_side=embedder.preprocess.size).image))
                ok.append(f)
            except OSError as e:
                errors.append((f, f"cannot read {f}: {e.strerror or e}"))
            except DecodeError as e:
                errors.append((f, str(e)))
        vectors = embedder.embed_arrays(np.stack(pixels))[0] if pixels else np.zeros((0, embedder.dim), np.float32)
        return ok, vectors, errors

    def predict_files(self, files: list[str]) -> tuple[list[dict], list[tuple[str, str]]]:
        from .classify import load_model

        model = load_model(self.store)
        ok, vectors, errors = self.embed_files(files)
        rows = [{"file": f, "predicted": label, "best": best, "confidence": round(conf, 4)}
                for f, (label, best, conf, _) in zip(ok, model.predict(vectors))]
        return rows, errors

    def explain(self, target: str, label: str | None = None, *, max_side: int | None = None,
                method: str = "auto"):
        """Heatmap of where the current model finds `label` (default: its prediction) in a library
        image (path or id) or any image file: an `organizer.explain.Explanation`."""
        from .explain import explain

        return explain(self, target, label, max_side=max_side, method=method)

    def review(self, limit: int = 20, strategy: str = "auto", *, include_named: bool = True) -> list[dict]:
        """Images no person has labeled yet that are worth asking about next, with the current model's guess.

        include_named=False leaves out images that carry a cluster name too (only unnamed ones)."""
        from .classify import PERSON_SOURCES, load_model
        from .review import STRATEGIES, held_out_proba, select, select_random
        from .vectors import load_vectors

        if strategy not in STRATEGIES:
            raise StoreError(f"unknown review strategy {strategy!r}: use {' or '.join(STRATEGIES)}")
        model = load_model(self.store)
        rows = {r[0]: (r[1], r[2]) for r in self.store.db.execute("SELECT image_id, name, source FROM labels")}
        person = {i for i, (_, src) in rows.items() if src in PERSON_SOURCES}
        skip = person if include_named else set(rows)
        ids = [i for i in self.store.present_image_ids() if i not in skip]
        if not ids or limit <= 0:
            return []
        if strategy == "random":  # seeded by the number of answers so far: reproducible, new each round
            picked = select_random(len(ids), limit, seed=len(person))
            _, X = load_vectors(self.store, [ids[i] for i in picked])
            ids = [ids[i] for i in picked]
            proba = held_out_proba(self.store, ids, model.predict_proba(X), model.classes)
            picked = np.arange(len(ids))
        else:
            _, X = load_vectors(self.store, ids)
            proba = held_out_proba(self.store, ids, model.predict_proba(X), model.classes)
            counts = collections.Counter(rows[i][0] for i in person)
            class_counts = np.array([counts.get(c, 0) for c in model.classes], np.float64)
            picked = select(X, proba, class_counts, limit)
        paths = self.store.primary_paths([ids[i] for i in picked])
        out = []
        for i in picked:
            order = np.argsort(-proba[i])
            second = float(proba[i, order[1]]) if len(order) > 1 else 0.0
            out.append({"path": paths[ids[i]], "image_id": ids[i], "predicted": model.classes[order[0]],
                        "confidence": round(float(proba[i, order[0]]), 4),
                        "runner_up": model.classes[order[1]] if len(order) > 1 else None,
                        "margin": round(float(proba[i, order[0]]) - second, 4),
                        "label": rows.get(ids[i], (None,))[0]})
        return out

    # -- search -------------------------------------------------------------------
    def similar(self, target: str, k: int = 10) -> list[tuple[str, str, float]]:
        from .search import query
        from .vectors import load_vectors

        image_id = self._find_image(target)
        if image_id:
            _, vec = load_vectors(self.store, [image_id])
            hits = query(self.store, vec, k, exclude={image_id})[0]
        elif os.path.isfile(target):
            ok, vec, errors = self.embed_files([target])
            if errors:
                raise StoreError(errors[0][1])
            hits = query(self.store, vec, k)[0]
        else:
            raise StoreError(f"{target} is neither a path in the library, an image id, nor a file")
        return self._with_paths(hits)

    def search_text(self, text: str, k: int = 10) -> list[tuple[str, str, float]]:
        from .search import query

        embedder = self.embedder()
        if not getattr(embedder, "has_text", False):
            raise StoreError(f"text search needs a CLIP backbone; this store uses {self.store.backbone} "
                             "(index into a new store with --backbone clip)")
        return self._with_paths(query(self.store, embedder.embed_text([text]), k)[0])

    def _find_image(self, target: str) -> str | None:
        if self.store.db.execute("SELECT 1 FROM images WHERE id=?", (target,)).fetchone():
            return target
        try:
            return self.resolve_paths([target])[0]
        except StoreError:
            return None

    def _with_paths(self, hits):
        paths = self.store.primary_paths([h[0] for h in hits])
        return [(paths.get(i, ""), i, round(s, 4)) for i, s in hits]

    # -- export -------------------------------------------------------------------
    COLUMNS = ["path", "image_id", "cluster", "label", "label_source", "predicted", "confidence", "width", "height",
               "tags", "predicted_tags"]

    def export_rows(self) -> list[dict]:
        clusters = self.store.cluster_assignments()
        labels = {r[0]: (r[1], r[2]) for r in self.store.db.execute("SELECT image_id, name, source FROM labels")}
        preds = {r[0]: (r[1], r[2]) for r in self.store.db.execute("SELECT image_id, label, confidence FROM predictions")}
        from .tags import export_columns

        no_tags = {"tags": "", "predicted_tags": ""}
        tags = export_columns(self.store)
        rows = []
        for path, image_id, width, height in self.store.db.execute(
                "SELECT f.path, f.image_id, i.width, i.height FROM files f JOIN images i ON i.id = f.image_id "
                "WHERE f.status='ok' ORDER BY f.path"):
            label, source = labels.get(image_id, ("", ""))
            pred, conf = preds.get(image_id, ("", None))
            rows.append({"path": path, "image_id": image_id, "cluster": clusters.get(image_id, (-1, 0))[0],
                         "label": label, "label_source": source, "predicted": pred,
                         "confidence": "" if conf is None else round(conf, 4), "width": width, "height": height,
                         **tags.get(image_id, no_tags)})
        return rows

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
        if fmt == "csv":
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=self.COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
            text = buf.getvalue()
        elif fmt == "json":
            text = json.dumps(rows, indent=1)
        else:
            raise StoreError(f"unknown export format {fmt!r}: use csv or json")
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda f: f.write(text.encode("utf-8")))
        return len(rows)

    # -- leaving the tool: sidecars, folders, a portable model, an API, watching ----
    def export_xmp(self, *, only: set[str] | None = None, **options):
        """XMP sidecars with each image's names as keywords (see organizer/sidecars.py for options);
        `only`: library paths to limit it to."""
        from .sidecars import export_sidecars

        rows = self.export_rows()
        if only is not None:
            rows = [r for r in rows if r["path"] in only]
        return export_sidecars(rows, self.store.library_root, **options)

    def export_folders(self, out, *, link: str = "symbolic"):
        from .export_folders import export_folders

        return export_folders(self.export_rows(), self.store.library_root, out, link=link)

    def export_model(self, out, *, model_id: int | None = None) -> dict:
        from .portable import export_model

        return export_model(self.store, out, model_id=model_id)

    def api(self, *, token: str | None = None, **limits):
        """The prediction API as an ASGI app (FastAPI), for `organizer serve` or any ASGI server."""
        from .serve import create_app

        return create_app(self.store.root, token=token, **limits)

    def watch(self, folder, **options) -> int:
        from .watch import watch

        return watch(self, folder, **options)

    # -- overview -----------------------------------------------------------------
    def status(self) -> dict:
        counts = self.store.counts()
        model = self.store.current_model()
        return {"store": str(self.store.root), "library": str(self.store.library_root or ""),
                "backbone": self.store.backbone, **counts,
                "clusterings": self.store.db.execute("SELECT COUNT(*) FROM clusterings").fetchone()[0],
                "model": dict(model) if model else None}

    def image_path(self, image_id: str) -> Path | None:
        """The file of an image, looked up by id only (never from a user-typed path)."""
        rel = self.store.primary_paths([image_id]).get(image_id)
        root = self.store.library_root
        return (root / rel) if rel and root else None


def _clean_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not name:
        raise StoreError("a name cannot be empty")
    if name.lower() == "unknown":
        raise StoreError("'unknown' is reserved for predictions below the confidence threshold")
    if len(name) > 200:
        raise StoreError("a name is limited to 200 characters")
    return name


