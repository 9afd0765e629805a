"""Groups: discover them, list them as a tree, name them, and fix them (move, drop, merge, split), and
the 2-D map. Names always attach to image ids (the labels table); cluster numbers only say which images
sit together in the current clustering, so editing clusters never loses a name a person gave."""
from __future__ import annotations

import collections
import hashlib
import json
import time

import numpy as np

from organizer.library.core import clean_name
from organizer.library.results import ClusterInfo, Grouping
from organizer.store import StoreError, dumps, replace_file
from organizer.store import history

MAP_FILE = "map2d.npz"
MAP_MAX_POINTS = 50_000  # beyond this the map shows a fixed random sample (UMAP time grows quickly)


class GroupsMixin:
    # -- discovering --------------------------------------------------------------
    def cluster(self, *, min_cluster_size: int | None = None, seed: int = 0, suggest: bool = True,
                keep_empty: bool = True, engine: str = "local", ray_address: str | None = None,
                workers: int | None = None, max_fit: int | None = None) -> Grouping:
        """Group every image anew. keep_empty=False refuses (saving nothing) a grouping that leaves
        every image unsorted, so a person's current groups are not replaced by none. engine "ray"
        assigns the images outside the fitted sample (max_fit, default 20,000) on a Ray cluster."""
        import contextlib

        from organizer.discover.cluster import cluster_vectors
        from organizer.store.vectors import load_vectors

        if engine not in ("local", "ray"):
            raise StoreError(f"unknown engine {engine!r}: use local or ray")
        if max_fit is not None and max_fit < 50:
            raise StoreError(f"a fit sample of {max_fit} images is too small to find groups in: choose at least 50 "
                             "(default 20,000); nothing was changed")
        if engine == "ray":
            from organizer.engine_ray.rows import cluster_inputs

            ids, X, on = cluster_inputs(self.store, address=ray_address, workers=workers)
        else:
            # rows in content-hash order: the groups depend on which photos the library holds, not
            # on the order they were indexed in (UMAP's draw follows the row order)
            (ids, X), on = load_vectors(self.store, sorted(self.store.present_image_ids())), contextlib.nullcontext()
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
            from organizer.discover.naming import suggest as suggest_names

            suggestions = suggest_names(self.embedder(), X, self._norms(ids), result.labels)
        db = self.store.db
        with self.store.transaction():
            cid = db.execute(
                "INSERT INTO clusterings(created_at, backbone, params, seed, n_images, n_clusters) VALUES(?,?,?,?,?,?)",
                (time.time(), self.store.backbone, dumps(result.params), seed, len(ids), n_clusters)).lastrowid
            self.store.record("regroup", f"grouped {len(ids)} images into {n_clusters} clusters "
                              f"({int((result.labels < 0).sum())} unsorted)", [["clustering", cid]])
            nodes = result.nodes if result.nodes is not None else np.full(len(ids), -1)
            db.executemany(
                "INSERT INTO cluster_members(clustering_id, image_id, cluster, core_cluster, probability, node) "
                "VALUES(?,?,?,?,?,?)",
                [(cid, i, int(c), int(k), float(p), int(v) if v >= 0 else None) for i, c, k, p, v in
                 zip(ids, result.labels, result.core_labels, result.probabilities, nodes)])
            agreement = dict(enumerate(result.agreement))
            db.executemany("INSERT INTO cluster_nodes(clustering_id, node, parent, level, agreement) VALUES(?,?,?,?,?)",
                           [(cid, t["id"], t["parent"], t["level"], agreement.get(t["id"])) for t in result.tree])
            db.executemany("INSERT INTO cluster_merges(clustering_id, a, b, kappa) VALUES(?,?,?,?)",
                           [(cid, a, b, k) for a, b, k in result.merges])
            db.executemany("INSERT INTO cluster_suggestions(clustering_id, cluster, names) VALUES(?,?,?)",
                           [(cid, c, json.dumps(names)) for c, names in suggestions.items()])
        return Grouping(cid, len(ids), n_clusters, int((result.labels < 0).sum()),
                        int((result.core_labels < 0).sum()), result.params)

    # -- listing --------------------------------------------------------------------
    def clusters(self, *, samples: int = 6, tree: bool = False) -> list[ClusterInfo]:
        """The flat clusters, those that teach a classifier most first (big and tight before small
        and loose: size x agreement), then the unsorted images; tree=True adds the group tree's
        other nodes (parents: groups of groups; sub-groups: parts of a cluster) after them."""
        store = self.store
        cid = store.current_clustering_id()
        if cid is None:
            return []
        members = collections.defaultdict(list)
        for image_id, cluster in store.db.execute(
                "SELECT image_id, cluster FROM cluster_members WHERE clustering_id=? "
                "ORDER BY probability DESC, image_id", (cid,)):
            members[cluster].append(image_id)
        suggestions = {r[0]: [tuple(x) for x in json.loads(r[1])] for r in store.db.execute(
            "SELECT cluster, names FROM cluster_suggestions WHERE clustering_id=?", (cid,))}
        nodes = store.cluster_tree(cid)
        kids = collections.defaultdict(list)
        for v, (parent, _, _) in nodes.items():
            if parent >= 0:
                kids[parent].append(v)
        alike = collections.defaultdict(list)
        for a, b in store.db.execute("SELECT a, b FROM cluster_merges WHERE clustering_id=?", (cid,)):
            alike[a].append(b)
            alike[b].append(a)
        labels = store.labels()
        paths = store.primary_paths()

        def info(c, ids, level):
            ids = [i for i in ids if i in paths]
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
            for v in sorted(nodes):
                if v in members:
                    continue
                level = nodes[v][1]
                if level == "group":  # no longer a cluster: split along the tree (a parent now) or merged away
                    if not any(k in members for k in kids.get(v, [])):
                        continue
                    level = "parent"
                out.append(info(v, store.node_member_ids(v, cid), level))
        return out

    def flat_cluster_ids(self) -> set[int]:
        """Ids of the current flat clusters (-1: unsorted), to tell them from tree nodes: after a split
        along the tree the split cluster stays in the tree as a "group" node."""
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

    def check_cluster_id(self, value: object) -> int:
        """A flat cluster or group-tree node of the current clustering; anything else is refused."""
        try:
            cluster = int(str(value).strip())
        except ValueError:
            raise StoreError("not a cluster number") from None
        self.cluster_members(cluster)
        return cluster

    def _current(self) -> int:
        cid = self.store.current_clustering_id()
        if cid is None:
            raise StoreError("no clustering yet: group the images first (`organizer cluster`)")
        return cid

    def cluster_name(self, cluster: int) -> str | None:
        """The name most members of a cluster (or tree node) carry: names live on images, not clusters."""
        return self._top_name(cluster) if cluster >= 0 else None

    def _given_name(self, cluster: int) -> str | None:
        """The name the group itself was given: the most common name its members carry from naming
        the group (source "cluster"). A name a person gave some members by hand is theirs, not the group's."""
        return self._top_name(cluster, source="cluster")

    def _top_name(self, cluster: int, source: str | None = None) -> str | None:
        """The most common name among a cluster's members (ties: the first by name), optionally only
        names of one source."""
        names = collections.Counter()
        ids = self.cluster_members(cluster)
        only = " AND source=?" if source else ""
        for start in range(0, len(ids), 900):  # SQLite's limit on bound parameters
            part = ids[start:start + 900]
            names.update(r[0] for r in self.store.db.execute(
                f"SELECT name FROM labels WHERE image_id IN ({','.join('?' * len(part))}){only}",
                part + ([source] if source else [])))
        return min(names.items(), key=lambda t: (-t[1], t[0]))[0] if names else None

    def _check_flat(self, cluster: int) -> int:
        """A flat cluster of the current clustering (not a tree node, not the unsorted images)."""
        if cluster not in self.flat_cluster_ids() or cluster < 0:
            raise StoreError(f"unknown cluster {cluster}: see `organizer clusters`")
        return cluster

    def cluster_name_counts(self) -> dict[int, list[tuple[str, int]]]:
        """Every name each cluster's images carry, most used first (a merge can leave two)."""
        cid = self.store.current_clustering_id()
        out: dict[int, list[tuple[str, int]]] = {}
        if cid is None:
            return out
        for cluster, name, n in self.store.db.execute(
                "SELECT m.cluster, l.name, COUNT(*) n FROM cluster_members m JOIN labels l ON l.image_id = m.image_id "
                "WHERE m.clustering_id=? GROUP BY m.cluster, l.name ORDER BY m.cluster, n DESC, l.name", (cid,)):
            out.setdefault(cluster, []).append((name, n))
        return out

    # -- naming ---------------------------------------------------------------------
    def name_cluster(self, cluster: int, name: str) -> int:
        """Name every image of a cluster or tree node. A name a person gave one image stays, except
        that renaming the group renames the images carrying its old name (moved in by hand, say),
        so a rename is never half-applied. Returns how many images got the name."""
        store = self.store
        new = clean_name(name)
        if int(cluster) < 0:
            raise StoreError("-1 holds the unsorted images, not a cluster: label them with `organizer label`")
        cluster = self.check_cluster_id(cluster)
        old = self._given_name(cluster)
        renaming = bool(old) and old != new
        what = f"renamed cluster {cluster} “{old}” to “{new}”" if renaming else f"named cluster {cluster} “{new}”"
        with store.action("rename" if renaming else "name", what):
            ids = self.cluster_members(cluster)
            n = store.set_labels(ids, new, "cluster", overwrite_manual=False)
            if renaming:
                labels = store.labels()
                stale = [i for i in ids if labels.get(i) == old]
                if stale:
                    store.set_labels(stale, new, "manual")
        return n

    # -- moving images --------------------------------------------------------------
    def _set_cluster(self, image_ids: list[str], cluster: int) -> None:
        store = self.store
        cid = self._current()
        with store.transaction():
            store.record("move", f"moved {len(image_ids)} images", [history.members_before(store, cid, image_ids)])
            store.db.executemany(
                "INSERT INTO cluster_members(clustering_id, image_id, cluster, core_cluster, probability) "
                "VALUES(?,?,?,-1,0) ON CONFLICT(clustering_id, image_id) DO UPDATE SET cluster=excluded.cluster",
                [(cid, i, cluster) for i in image_ids])
            _recount(store, cid)

    def move_to_cluster(self, image_ids, cluster: int) -> int:
        """Move images into another cluster; they take its name, or lose theirs if it has none."""
        ids = self._known_ids(image_ids)
        if cluster < 0:
            return self.drop_to_unsorted(ids)
        self._check_flat(cluster)
        name = self.cluster_name(cluster)
        with self.store.action("move", f"moved {len(ids)} images to cluster {cluster}" + (f" “{name}”" if name else "")):
            self._set_cluster(ids, cluster)
            if name:
                self.store.set_labels(ids, name, "manual")
            else:
                self.store.remove_labels(ids)
        return len(ids)

    def drop_to_unsorted(self, image_ids) -> int:
        """The images do not belong where they are: no cluster, no name."""
        ids = self._known_ids(image_ids)
        with self.store.action("drop", f"dropped {len(ids)} images to unsorted"):
            self._set_cluster(ids, -1)
            self.store.remove_labels(ids)
        return len(ids)

    # -- merging and splitting ------------------------------------------------------
    def merge_clusters(self, clusters: list[int], name: str | None = None) -> int:
        """Merge clusters into the largest of them; returns its number. Names stay on the images."""
        store = self.store
        clusters = sorted({int(c) for c in clusters})
        if len(clusters) < 2 or min(clusters) < 0:
            raise StoreError("select at least two clusters (not the unsorted images) to merge")
        for c in clusters:
            self._check_flat(c)
        cid = self._current()
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
                store.set_labels(store.cluster_member_ids(target), clean_name(name), "cluster", overwrite_manual=False)
        return target

    def split_cluster(self, cluster: int, *, seed: int = 0, progress=None) -> list[int]:
        """Split a cluster along the group tree (its sub-groups keep their tree ids); one without
        sub-groups is re-clustered alone. Returns the clusters its images now form.
        `progress(text)` hears each step as it starts (the first split loads models)."""
        from organizer.store.vectors import load_vectors

        say = progress or (lambda text: None)
        store = self.store
        if int(cluster) < 0:
            raise StoreError("the unsorted images are not a cluster: re-group the library instead")
        cluster = self._check_flat(int(cluster))
        ids, X = load_vectors(store, sorted(store.cluster_member_ids(cluster)))  # content order, as `cluster`
        if len(ids) < 4:
            raise StoreError(f"cluster {cluster} has {len(ids)} images: too few to split")
        cid = self._current()
        labels = _tree_parts(store, cid, cluster, ids, X)
        if labels is not None:
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
        try:
            from organizer.discover.naming import suggest

            suggestions = suggest(self.embedder(), X, self._norms(ids), assigned)
        except Exception:  # suggestions are a convenience; a split without them is still a split
            suggestions = {}
        with store.transaction():
            store.record("split", f"split cluster {cluster} into {len(groups)} clusters",
                         [history.members_before(store, cid, ids),
                          history.suggestions_before(store, cid, [cluster, *new_id.values()])])
            store.db.executemany("UPDATE cluster_members SET cluster=? WHERE clustering_id=? AND image_id=?",
                                 [(int(c), cid, i) for i, c in zip(ids, assigned)])
            store.db.executemany(
                "INSERT OR REPLACE INTO cluster_suggestions(clustering_id, cluster, names) VALUES(?,?,?)",
                [(cid, c, json.dumps(names)) for c, names in suggestions.items()])
            _recount(store, cid)
        return [new_id[g] for g in groups]

    # -- the 2-D map ----------------------------------------------------------------
    def map_coords(self, *, compute: bool = True) -> tuple[list[str], np.ndarray] | None:
        """(ids, (n, 2) coordinates) from UMAP to 2-D, cached in the store until the vectors change
        (a cache: .npz read with allow_pickle=False, ids as a fixed-width text array)."""
        from organizer.store.vectors import load_vectors

        store = self.store
        ids = store.present_image_ids()
        if len(ids) > MAP_MAX_POINTS:
            rng = np.random.default_rng(0)
            ids = [ids[i] for i in sorted(rng.choice(len(ids), MAP_MAX_POINTS, replace=False))]
        key = hashlib.sha256("\n".join([store.backbone or "", *ids]).encode()).hexdigest()
        path = store.cache_dir() / MAP_FILE
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
        replace_file(tmp, path)
        return ids, xy

    def map_points(self, ids: list[str], xy: np.ndarray) -> list[dict]:
        """One row per map dot: where it is, and what to color and show it by."""
        store = self.store
        assign = store.cluster_assignments()
        labels = store.labels()
        named = {c.id: c.label for c in self.clusters(samples=0) if c.label}
        preds = {r[0]: r[1] for r in store.db.execute("SELECT image_id, label FROM predictions")}
        paths = store.primary_paths(ids)
        rows = []
        for i, (x, y) in zip(ids, xy.tolist()):
            c = assign.get(i, (-1, 0))[0]
            group = "unsorted" if c < 0 else f"cluster {c}" + (f" · {named[c]}" if c in named else "")
            rows.append({"id": i, "x": x, "y": y, "path": paths.get(i, ""), "cluster": group,
                         "name": labels.get(i, "(no name)"), "prediction": preds.get(i, "(none)")})
        return rows


def _recount(store, cid: int) -> None:
    n = store.db.execute("SELECT COUNT(DISTINCT cluster) FROM cluster_members WHERE clustering_id=? AND cluster>=0",
                         (cid,)).fetchone()[0]
    store.db.execute("UPDATE clusterings SET n_clusters=? WHERE id=?", (n, cid))


def _tree_parts(store, cid: int, cluster: int, ids: list[str], X: np.ndarray) -> np.ndarray | None:
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
    return _join_nearest(X, labels)


def _join_nearest(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows labeled -1 join the group whose centroid is nearest (they belonged to the split cluster)."""
    groups = sorted({int(x) for x in labels if x >= 0})
    rest = labels < 0
    if rest.any():
        centroids = np.stack([X[labels == g].mean(axis=0) for g in groups])
        labels = labels.copy()
        labels[rest] = np.array(groups)[np.argmax(X[rest] @ centroids.T, axis=1)]
    return labels


def _subcluster(X: np.ndarray, seed: int) -> np.ndarray:
    """The project's clusterer on the members alone; if it finds fewer than two groups (common for
    small clusters) k-means with k=2 splits them."""
    labels = None
    try:
        from organizer.discover.cluster import cluster_vectors

        labels = np.asarray(cluster_vectors(X, min_cluster_size=max(3, len(X) // 8), seed=seed).labels)
    except Exception:  # the clusterer may refuse tiny inputs; k-means below always answers
        labels = None
    if labels is None or len({int(x) for x in labels if x >= 0}) < 2:
        from sklearn.cluster import KMeans

        return KMeans(2, n_init=4, random_state=seed).fit_predict(X)
    return _join_nearest(X, labels)


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
