"""App-facing operations the Library lacks: moving images between groups, merging and
splitting clusters, the 2-D map, thumbnails by id, review queues and in-memory exports.

Names always attach to image ids (the labels table); cluster numbers only say which images
sit together in the current clustering, so editing clusters never loses a name that a
person gave on purpose. Caches written here live under <store>/app/ and are disposable."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np

from organizer.store import history
from organizer.library import Library, _clean_name
from organizer.store import Store, StoreError

ID_RE = re.compile(r"[0-9a-f]{32}")
CACHE_DIR = "app"
MAP_FILE = "map2d.npz"
MAP_MAX_POINTS = 50_000  # beyond this the map shows a fixed random sample (UMAP time grows quickly)


def _cache_dir(store: Store) -> Path:
    path = store.root / CACHE_DIR
    path.mkdir(exist_ok=True)
    return path


# -- ids and thumbnails ------------------------------------------------------------------
def check_image_id(store: Store, value: object) -> str:
    """The id if it names an image of this store; anything else (paths, '../', junk) is refused."""
    text = str(value or "").strip().lower()
    if not ID_RE.fullmatch(text):
        raise StoreError("not an image id (expected 32 hexadecimal characters)")
    if not store.db.execute("SELECT 1 FROM images WHERE id=?", (text,)).fetchone():
        raise StoreError("unknown image id: no image in this library has it")
    return text


def check_cluster_id(store: Store, value: object) -> int:
    try:
        cluster = int(str(value).strip())
    except ValueError:
        raise StoreError("not a cluster number") from None
    cid = store.current_clustering_id()
    if cid is None or not store.db.execute(
            "SELECT 1 FROM cluster_members WHERE clustering_id=? AND cluster=? LIMIT 1", (cid, cluster)).fetchone():
        raise StoreError(f"unknown cluster {cluster}")
    return cluster


def thumbnails(store: Store, image_ids: list[str]) -> dict[str, bytes]:
    """Stored thumbnails by id, made on first view for images indexed without one."""
    out: dict[str, bytes] = {}
    for start in range(0, len(image_ids), 900):
        part = image_ids[start:start + 900]
        q = f"SELECT id, thumbnail FROM images WHERE id IN ({','.join('?' * len(part))})"
        out.update({r[0]: r[1] for r in store.db.execute(q, part)})
    for image_id in [i for i in image_ids if i in out and not out[i]]:
        made = _make_thumbnail(store, image_id)
        if made:
            out[image_id] = made
        else:
            out.pop(image_id)
    return out


def thumbnail(store: Store, image_id: str) -> bytes | None:
    return thumbnails(store, [check_image_id(store, image_id)]).get(image_id)


def _make_thumbnail(store: Store, image_id: str) -> bytes | None:
    from organizer.ingest.decode import DecodeError, decode_image, make_thumbnail

    rel = store.primary_paths([image_id]).get(image_id)
    root = store.library_root
    if not rel or root is None:
        return None
    try:
        data = (root / rel).read_bytes()
        thumb = make_thumbnail(decode_image(data, name=rel, min_side=256).image, 256)
    except (OSError, DecodeError):
        return None
    with store.transaction():
        store.db.execute("UPDATE images SET thumbnail=? WHERE id=?", (thumb, image_id))
    return thumb


def image_info(store: Store, image_id: str) -> dict:
    image_id = check_image_id(store, image_id)
    row = store.db.execute("SELECT width, height, format FROM images WHERE id=?", (image_id,)).fetchone()
    label = store.db.execute("SELECT name, source FROM labels WHERE image_id=?", (image_id,)).fetchone()
    pred = store.db.execute("SELECT label, confidence FROM predictions WHERE image_id=?", (image_id,)).fetchone()
    return {"id": image_id, "path": store.primary_paths([image_id]).get(image_id, ""),
            "width": row[0], "height": row[1], "format": row[2],
            "cluster": store.cluster_assignments().get(image_id, (-1, 0.0))[0],
            "label": label[0] if label else None, "label_source": label[1] if label else None,
            "predicted": pred[0] if pred else None, "confidence": pred[1] if pred else None}


# -- overview ---------------------------------------------------------------------------
def overview(lib: Library) -> dict:
    store = lib.store
    info = lib.status()
    info["errors"] = [(r[0], r[1]) for r in store.db.execute(
        "SELECT path, error FROM files WHERE status='error' ORDER BY path")]
    info["clusterings"] = [dict(r) for r in store.db.execute(
        "SELECT id, created_at, params, seed, n_images, n_clusters FROM clusterings ORDER BY id DESC LIMIT 5")]
    info["models"] = [dict(r) for r in store.db.execute(
        "SELECT id, created_at, classes, metrics, n_train, current FROM models ORDER BY id DESC LIMIT 5")]
    info["label_names"] = label_names(store)
    info["n_clusters"] = len({c for c, _ in store.cluster_assignments().values() if c >= 0})
    return info


def label_names(store: Store) -> list[tuple[str, int]]:
    """Names in use, most used first."""
    return [(r[0], r[1]) for r in store.db.execute(
        "SELECT name, COUNT(*) FROM labels GROUP BY name ORDER BY COUNT(*) DESC, name")]


# -- moving images ------------------------------------------------------------------------
def _current(store: Store) -> int:
    cid = store.current_clustering_id()
    if cid is None:
        raise StoreError("no clustering yet: group the images first")
    return cid


def cluster_name(store: Store, cluster: int) -> str | None:
    """The name most members of a cluster carry (names live on images, not on clusters)."""
    row = store.db.execute(
        "SELECT l.name, COUNT(*) n FROM cluster_members m JOIN labels l ON l.image_id = m.image_id "
        "WHERE m.clustering_id=? AND m.cluster=? GROUP BY l.name ORDER BY n DESC, l.name LIMIT 1",
        (_current(store), cluster)).fetchone()
    return row[0] if row and cluster >= 0 else None


def cluster_name_counts(store: Store) -> dict[int, list[tuple[str, int]]]:
    """Every name each cluster's images carry, most used first (a merge can leave two)."""
    cid = store.current_clustering_id()
    out: dict[int, list[tuple[str, int]]] = {}
    if cid is None:
        return out
    for cluster, name, n in store.db.execute(
            "SELECT m.cluster, l.name, COUNT(*) n FROM cluster_members m JOIN labels l ON l.image_id = m.image_id "
            "WHERE m.clustering_id=? GROUP BY m.cluster, l.name ORDER BY m.cluster, n DESC, l.name", (cid,)):
        out.setdefault(cluster, []).append((name, n))
    return out


def _set_cluster(store: Store, image_ids: list[str], cluster: int) -> None:
    cid = _current(store)
    with store.transaction():
        store.record("move", f"moved {len(image_ids)} images", [history.members_before(store, cid, image_ids)])
        store.db.executemany(
            "INSERT INTO cluster_members(clustering_id, image_id, cluster, core_cluster, probability) "
            "VALUES(?,?,?,-1,0) ON CONFLICT(clustering_id, image_id) DO UPDATE SET cluster=excluded.cluster",
            [(cid, i, cluster) for i in image_ids])
        _recount(store, cid)


def _recount(store: Store, cid: int) -> None:
    n = store.db.execute("SELECT COUNT(DISTINCT cluster) FROM cluster_members WHERE clustering_id=? AND cluster>=0",
                         (cid,)).fetchone()[0]
    store.db.execute("UPDATE clusterings SET n_clusters=? WHERE id=?", (n, cid))


def _known_ids(store: Store, image_ids) -> list[str]:
    return [check_image_id(store, i) for i in dict.fromkeys(image_ids)]


def move_to_cluster(store: Store, image_ids, cluster: int) -> int:
    """Move images into another cluster; they take its name, or lose theirs if it has none."""
    ids = _known_ids(store, image_ids)
    if cluster < 0:
        return drop_to_unsorted(store, ids)
    check_cluster_id(store, cluster)
    name = cluster_name(store, cluster)
    with store.action("move", f"moved {len(ids)} images to cluster {cluster}" + (f" “{name}”" if name else "")):
        _set_cluster(store, ids, cluster)
        if name:
            store.set_labels(ids, name, "manual")
        else:
            store.remove_labels(ids)
    return len(ids)


def move_to_label(store: Store, image_ids, name: str) -> int:
    """Give images a name by hand (it wins over cluster names, now and after re-clustering)."""
    return store.set_labels(_known_ids(store, image_ids), _clean_name(name), "manual")


def drop_to_unsorted(store: Store, image_ids) -> int:
    """The images do not belong where they are: no cluster, no name."""
    ids = _known_ids(store, image_ids)
    with store.action("drop", f"dropped {len(ids)} images to unsorted"):
        _set_cluster(store, ids, -1)
        store.remove_labels(ids)
    return len(ids)


def name_cluster(lib: Library, cluster: int, name: str) -> int:
    """Name a cluster; renaming replaces the old name on its members too, hand-given ones included
    when they carried the old cluster name (so a rename is never half-applied)."""
    store = lib.store
    old = cluster_name(store, check_cluster_id(store, cluster))
    new = _clean_name(name)
    what = f"renamed cluster {cluster} “{old}” to “{new}”" if old and old != new else f"named cluster {cluster} “{new}”"
    with store.action("rename" if old and old != new else "name", what):
        n = lib.name_cluster(cluster, name)
        if old and old != new:
            labels = store.labels()
            stale = [i for i in lib.cluster_members(cluster) if labels.get(i) == old]
            if stale:
                store.set_labels(stale, new, "manual")
    return n


# -- merging and splitting ------------------------------------------------------------------
def merge_clusters(store: Store, clusters: list[int], name: str | None = None) -> int:
    """Merge clusters into the largest of them; returns its number. Names stay on the images."""
    clusters = sorted({check_cluster_id(store, c) for c in clusters})
    if len(clusters) < 2 or min(clusters) < 0:
        raise StoreError("select at least two clusters (not the unsorted images) to merge")
    cid = _current(store)
    sizes = {c: len(store.cluster_member_ids(c)) for c in clusters}
    target = max(clusters, key=lambda c: (sizes[c], -c))
    others = [c for c in clusters if c != target]
    with store.action("merge", f"merged clusters {', '.join(map(str, clusters))} into cluster {target}"):
        with store.transaction():
            store.record("merge", "", [history.clusters_before(store, cid, others),
                                       history.suggestions_before(store, cid, others)])
            q = ",".join("?" * len(others))
            store.db.execute(f"UPDATE cluster_members SET cluster=? WHERE clustering_id=? AND cluster IN ({q})",
                             (target, cid, *others))
            store.db.execute(f"DELETE FROM cluster_suggestions WHERE clustering_id=? AND cluster IN ({q})",
                             (cid, *others))
            _recount(store, cid)
        if name:
            store.set_labels(store.cluster_member_ids(target), _clean_name(name), "cluster", overwrite_manual=False)
    return target


def split_cluster(lib: Library, cluster: int, *, seed: int = 0, progress=None) -> list[int]:
    """Re-cluster one cluster's members in place; returns the clusters they now form.

    The project's clusterer runs on the members alone; if it finds fewer than two groups
    (common for small clusters) k-means with k=2 splits them. Members it leaves as noise
    join the nearest new group, since they belonged to this cluster before.
    `progress(text)` hears each step as it starts (the first split loads models)."""
    from organizer.store.vectors import load_vectors

    say = progress or (lambda text: None)
    store = lib.store
    cluster = check_cluster_id(store, cluster)
    if cluster < 0:
        raise StoreError("the unsorted images are not a cluster: re-group the library instead")
    ids, X = load_vectors(store, store.cluster_member_ids(cluster))
    if len(ids) < 4:
        raise StoreError(f"cluster {cluster} has {len(ids)} images: too few to split")
    cid = _current(store)
    labels = _tree_parts(store, cid, cluster, ids, X)
    if labels is not None:  # along the group tree: its sub-groups keep their tree ids
        say(f"Splitting into its {len(set(labels.tolist()))} sub-groups...")
        groups = sorted(set(labels.tolist()), key=lambda g: -(labels == g).sum())
        new_id = {g: g for g in groups}
    else:
        say(f"Finding groups among its {len(ids)} images...")
        labels = _subcluster(X, seed)
        groups = sorted(set(labels.tolist()), key=lambda g: -(labels == g).sum())
        first_new = max(store.db.execute("SELECT MAX(cluster) FROM cluster_members WHERE clustering_id=?",
                                         (cid,)).fetchone()[0] or 0,
                        max(store.cluster_tree(cid), default=0)) + 1  # tree node ids are taken
        new_id = {g: (cluster if k == 0 else first_new + k - 1) for k, g in enumerate(groups)}
    assigned = np.array([new_id[g] for g in labels])
    say(f"Suggesting names for {len(groups)} groups...")
    suggestions = _suggest(lib, ids, X, assigned)
    with store.transaction():
        store.record("split", f"split cluster {cluster} into {len(groups)} clusters",
                     [history.members_before(store, cid, ids),
                      history.suggestions_before(store, cid, [cluster, *new_id.values()])])
        store.db.executemany("UPDATE cluster_members SET cluster=? WHERE clustering_id=? AND image_id=?",
                             [(int(c), cid, i) for i, c in zip(ids, assigned)])
        store.db.executemany("INSERT OR REPLACE INTO cluster_suggestions(clustering_id, cluster, names) VALUES(?,?,?)",
                             [(cid, c, json.dumps(names)) for c, names in suggestions.items()])
        _recount(store, cid)
    return [new_id[g] for g in groups]


def _tree_parts(store: Store, cid: int, cluster: int, ids: list[str], X: np.ndarray) -> np.ndarray | None:
    """Each member's sub-group in the group tree (members outside every sub-group join the one
    whose centroid is nearest), or None when the cluster has fewer than two sub-groups."""
    tree = store.cluster_tree(cid)
    kids = [v for v, (parent, _, _) in tree.items() if parent == cluster]
    if len(kids) < 2:
        return None
    where = {}
    for k in kids:
        for i in store.node_member_ids(k, cid):
            where[i] = k
    labels = np.array([where.get(i, -1) for i in ids], np.int64)
    if (labels >= 0).sum() < 2 or len(set(labels[labels >= 0].tolist())) < 2:
        return None
    groups = sorted(set(labels[labels >= 0].tolist()))
    centroids = np.stack([X[labels == g].mean(axis=0) for g in groups])
    rest = labels < 0
    if rest.any():
        labels[rest] = np.array(groups)[np.argmax(X[rest] @ centroids.T, axis=1)]
    return labels


def _subcluster(X: np.ndarray, seed: int) -> np.ndarray:
    labels = None
    try:
        from organizer.discover.cluster import cluster_vectors

        labels = np.asarray(cluster_vectors(X, min_cluster_size=max(3, len(X) // 8), seed=seed).labels)
    except Exception:  # the clusterer may refuse tiny inputs; k-means below always answers
        labels = None
    if labels is None or len({int(x) for x in labels if x >= 0}) < 2:
        from sklearn.cluster import KMeans

        return KMeans(2, n_init=4, random_state=seed).fit_predict(X)
    if (labels < 0).any():
        groups = sorted({int(x) for x in labels if x >= 0})
        centroids = np.stack([X[labels == g].mean(axis=0) for g in groups])
        noise = labels < 0
        labels = labels.copy()
        labels[noise] = np.array(groups)[np.argmax(X[noise] @ centroids.T, axis=1)]
    return labels


def _suggest(lib: Library, ids: list[str], X: np.ndarray, assigned: np.ndarray) -> dict[int, list]:
    try:
        from organizer.discover.naming import suggest

        return suggest(lib.embedder(), X, lib._norms(ids), assigned)
    except Exception:  # suggestions are a convenience; a split without them is still a split
        return {}


# -- the 2-D map -----------------------------------------------------------------------------
def map_coords(store: Store, *, compute: bool = True) -> tuple[list[str], np.ndarray] | None:
    """(ids, (n, 2) coordinates) from UMAP to 2-D, cached in the store until the vectors change.

    Cached as .npz read with allow_pickle=False (ids are a fixed-width text array)."""
    from organizer.store.vectors import load_vectors

    ids = store.present_image_ids()
    if len(ids) > MAP_MAX_POINTS:
        rng = np.random.default_rng(0)
        ids = [ids[i] for i in sorted(rng.choice(len(ids), MAP_MAX_POINTS, replace=False))]
    key = hashlib.sha256("\n".join([store.backbone or "", *ids]).encode()).hexdigest()
    path = _cache_dir(store) / MAP_FILE
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) == key:
                return list(f["ids"].tolist()), f["xy"].astype(np.float32)
    except (OSError, ValueError, KeyError):
        pass  # missing or stale cache
    if not compute:
        return None
    if not ids:
        return [], np.zeros((0, 2), np.float32)
    _, X = load_vectors(store, ids)
    xy = _project(X)
    tmp = path.with_name("map2d.tmp.npz")
    np.savez(tmp, key=np.array(key), ids=np.array(ids), xy=xy)
    os.replace(tmp, path)
    return ids, xy


def map_points(lib: Library, ids: list[str], xy: np.ndarray) -> list[dict]:
    """One row per map dot: where it is, and what to color and show it by."""
    store = lib.store
    assign = store.cluster_assignments()
    labels = store.labels()
    named = {c.id: c.label for c in lib.clusters(samples=0) if c.label}
    preds = {r[0]: r[1] for r in store.db.execute("SELECT image_id, label FROM predictions")}
    paths = store.primary_paths(ids)
    rows = []
    for i, (x, y) in zip(ids, xy.tolist()):
        c = assign.get(i, (-1, 0))[0]
        group = "unsorted" if c < 0 else f"cluster {c}" + (f" · {named[c]}" if c in named else "")
        rows.append({"id": i, "x": x, "y": y, "path": paths.get(i, ""), "cluster": group,
                     "name": labels.get(i, "(no name)"), "prediction": preds.get(i, "(none)")})
    return rows


def _project(X: np.ndarray) -> np.ndarray:
    if len(X) < 5:  # UMAP needs a few neighbours; a tiny library gets its two main axes
        centered = X - X.mean(axis=0)
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        xy = centered @ vt[:2].T if len(X) > 1 else np.zeros((len(X), 2))
        return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))).astype(np.float32)
    import umap

    # min_dist 0.5 spreads each group out a little, so single dots can be hovered and boxed;
    # n_jobs=1 because a fixed seed runs single-threaded anyway (saying so avoids a warning)
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(X) - 1), min_dist=0.5, metric="cosine",
                        random_state=0, n_jobs=1)
    return reducer.fit_transform(X).astype(np.float32)


# -- training, confusion cells, review ----------------------------------------------------------
def train_and_predict(lib: Library, **kwargs) -> dict:
    """Train, then predict the library so every page shows the new model's answers."""
    metrics = lib.train(**kwargs)
    lib.predict()
    return metrics


def use_model(lib: Library, model_id: int) -> int:
    """Make a model version current and re-predict, so every page shows its answers."""
    lib.use_model(model_id)
    return lib.predict()


def label_issues(lib: Library, n: int = 24) -> list[dict]:
    return lib.label_issues(n)


def current_metrics(store: Store) -> dict | None:
    row = store.current_model()
    if row is None:
        return None
    metrics = json.loads(row["metrics"])
    metrics.update(model_id=row["id"], classes=json.loads(row["classes"]), created_at=row["created_at"])
    return metrics


def confusion_images(store: Store, model_id: int, given: str, predicted: str) -> list[str]:
    """Images labeled `given` that the out-of-fold model called `predicted`."""
    row = store.db.execute("SELECT path, classes FROM models WHERE id=?", (model_id,)).fetchone()
    snap = store.models_dir / f"{row['path']}.oof.json" if row else None
    oof_path = store.models_dir / f"{row['path']}.oof.npy" if row else None
    if row is None or not snap.exists() or not oof_path.exists():
        raise StoreError("this model has no out-of-fold predictions (a class had one example): train again with more labels")
    classes = json.loads(row["classes"])
    data = json.loads(snap.read_text())
    oof = np.load(oof_path, allow_pickle=False)
    if len(oof) != len(data["ids"]) or given not in classes or predicted not in classes:
        raise StoreError("the training snapshot does not match the model: train again")
    guess = oof.argmax(axis=1)
    want = classes.index(predicted)
    return [i for i, name, g in zip(data["ids"], data["labels"], guess) if name == given and g == want]


def review_queue(lib: Library, n: int = 24) -> list[dict]:
    """Images no person has checked that are worth asking about next (cluster-named ones too: the
    model's held-out doubt about them is what a named library needs reviewed). Each: image_id,
    best (the guess), confidence, runner_up, label (the cluster name it carries, if any)."""
    if hasattr(lib, "review"):
        return [{"image_id": r["image_id"], "best": r["predicted"], "confidence": r["confidence"],
                 "runner_up": r.get("runner_up"), "label": r.get("label")} for r in lib.review(n, include_named=True)]
    rows = lib.store.db.execute(
        "SELECT p.image_id, p.best, p.confidence FROM predictions p "
        "LEFT JOIN labels l ON l.image_id = p.image_id WHERE l.image_id IS NULL "
        "ORDER BY p.margin ASC, p.confidence ASC, p.image_id LIMIT ?", (n,))
    return [dict(r) for r in rows]


def accept(store: Store, image_ids, name: str, guess: str | None = None) -> int:
    """A review answer becomes a label the next training uses: 'accepted' when it confirms the
    model's guess, 'manual' when the person gave another name (a correction is their own label)."""
    name = _clean_name(name)
    source = "accepted" if guess is None or name == guess else "manual"
    ids = _known_ids(store, image_ids)
    what = f"confirmed “{name}” on {len(ids)} image(s)" if source == "accepted" else \
        f"corrected {len(ids)} image(s) to “{name}”" + (f" (the model said “{guess}”)" if guess else "")
    with store.action("review", what):
        return store.set_labels(ids, name, source)


def model_classes(store: Store) -> list[str]:
    row = store.current_model()
    return json.loads(row["classes"]) if row else []


def answers_since_training(store: Store) -> int:
    row = store.current_model()
    if row is None:
        return 0
    return store.db.execute("SELECT COUNT(*) FROM labels WHERE created_at > ?", (row["created_at"],)).fetchone()[0]


# -- predictions and export ------------------------------------------------------------------------
def predicted(store: Store, label: str | None = None, min_confidence: float = 0.0) -> list[dict]:
    sql = "SELECT image_id, label, best, confidence FROM predictions WHERE confidence >= ?"
    args: list = [min_confidence]
    if label is not None:
        sql += " AND label = ?"
        args.append(label)
    return [dict(r) for r in store.db.execute(sql + " ORDER BY confidence DESC, image_id", args)]


def confidence_text(confidence: float) -> str:
    """A confidence as a person reads it, never rounded up to a certainty it is not (0.997 reads
    "99.7%", not "100%")."""
    import math

    if confidence < 0.995:
        return f"{confidence:.0%}"
    return f"{math.floor(confidence * 1000) / 10:.1f}%" if confidence < 0.9995 else ">99.9%"


def percent_floor(percent: float) -> float:
    """The confidence a whole-percent floor means: everything shown as at least `percent`% when
    rounded to a whole percent (0.996 reads "100%", so "≥ 100%" must find it)."""
    return max(0.0, (float(percent) - 0.5) / 100.0)


def prediction_counts(store: Store) -> list[tuple[str, int]]:
    return [(r[0], r[1]) for r in store.db.execute(
        "SELECT label, COUNT(*) FROM predictions GROUP BY label ORDER BY COUNT(*) DESC, label")]


def export_bytes(lib: Library, fmt: str) -> bytes:
    """The same rows `organizer export` writes, as bytes for a download button."""
    rows = lib.export_rows()
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=Library.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().encode()
    if fmt == "json":
        return json.dumps(rows, indent=1).encode()
    raise StoreError(f"unknown export format {fmt!r}: use csv or json")


# -- search by an uploaded image ------------------------------------------------------------------
def similar_to_bytes(lib: Library, data: bytes, k: int = 24, *, name: str = "upload") -> list[tuple[str, float]]:
    """Library images most like an image given as bytes (nothing is written anywhere)."""
    from organizer.ingest.decode import DecodeError, decode_image
    from organizer.search import query

    embedder = lib.embedder()
    try:
        image = decode_image(data, name=name, min_side=embedder.preprocess.size).image
    except DecodeError as e:
        raise StoreError(str(e)) from None
    vec = embedder.embed_arrays(embedder.preprocess(image)[None])[0]
    return query(lib.store, vec, k)[0]


def similar_to_id(lib: Library, image_id: str, k: int = 24) -> list[tuple[str, float]]:
    from organizer.search import query
    from organizer.store.vectors import load_vectors

    image_id = check_image_id(lib.store, image_id)
    _, vec = load_vectors(lib.store, [image_id])
    return query(lib.store, vec, k, exclude={image_id})[0]


def search_text(lib: Library, text: str, k: int = 24) -> list[tuple[str, float]]:
    return [(i, s) for _, i, s in lib.search_text(text, k)]


def find_paths(store: Store, fragment: str, limit: int = 50) -> list[tuple[str, str]]:
    """(image id, path) of library files whose path contains `fragment`: a lookup, never a file read."""
    like = "%" + fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return [(r[0], r[1]) for r in store.db.execute(
        "SELECT image_id, MIN(path) FROM files WHERE status='ok' AND image_id IS NOT NULL AND path LIKE ? "
        "ESCAPE '\\' GROUP BY image_id ORDER BY MIN(path) LIMIT ?", (like, limit))]

