"""Learning from names: labels, training, model versions, predictions, review, label issues, undo.

Decided once, here, for the CLI, the app and Python users alike:
- `train` and `use_model` re-predict the library, so every page, export and `organizer status`
  shows the current model's answers; a review answer is a label and re-predicts nothing.
- the review queue offers every image no person has checked, cluster-named ones included: the
  model's held-out doubt about a named image is what a named library most needs a look at."""
from __future__ import annotations

import collections
import json

import numpy as np

from organizer.library.core import clean_name
from organizer.library.results import LabelIssue, ModelInfo, Prediction, ReviewItem
from organizer.store import StoreError


class LearningMixin:
    # -- labels ---------------------------------------------------------------------
    def label(self, paths: list[str], name: str, *, source: str = "manual") -> int:
        return self.label_ids(self.resolve_paths(paths), name, source=source)

    def label_ids(self, image_ids: list[str], name: str, *, source: str = "manual") -> int:
        """Give images a name by hand (it wins over cluster names, now and after re-clustering)."""
        return self.store.set_labels(self._known_ids(image_ids), clean_name(name), source)

    # -- training and model versions --------------------------------------------------
    def train(self, **kwargs) -> dict:
        """Train on the labeled images, then predict the library with the model that is current
        afterwards (a new model can be kept back when it is worse: see `models`). Returns the metrics."""
        from organizer.learn.classify import train

        metrics = train(self.store, **kwargs)
        metrics["predicted"] = self.predict()
        return metrics

    def models(self) -> list[ModelInfo]:
        from organizer.learn.versions import list_versions

        return list_versions(self.store)

    def current_model(self) -> ModelInfo | None:
        return next((m for m in self.models() if m.current), None)

    def use_model(self, model_id: int) -> int:
        """Make a model version current (rollback or forward) and re-predict; returns images predicted."""
        from organizer.learn.versions import use_version

        before = self.store.current_model()
        use_version(self.store, model_id)
        if before is not None and before["id"] != model_id:
            with self.store.transaction():
                self.store.record("model", f"made model {model_id} current (was {before['id']})",
                                  [["model", before["id"]]])
        return self.predict()

    def set_class_threshold(self, name: str, value: float | None) -> dict:
        from organizer.learn.model import set_class_threshold

        return set_class_threshold(self.store, name, value)

    def answers_since_training(self) -> int:
        """Labels given or changed since the current model was trained (what a new training would add)."""
        row = self.store.current_model()
        if row is None:
            return 0
        return self.store.db.execute("SELECT COUNT(*) FROM labels WHERE created_at > ?",
                                     (row["created_at"],)).fetchone()[0]

    def confusion_images(self, model_id: int, given: str, predicted: str) -> list[str]:
        """Images labeled `given` that the model's out-of-fold run called `predicted`."""
        store = self.store
        row = store.db.execute("SELECT path, classes FROM models WHERE id=?", (model_id,)).fetchone()
        snap = store.models_dir / f"{row['path']}.oof.json" if row else None
        oof_path = store.models_dir / f"{row['path']}.oof.npy" if row else None
        if row is None or not snap.exists() or not oof_path.exists():
            raise StoreError("this model has no out-of-fold predictions (a class had one example): "
                             "train again with more labels")
        classes = json.loads(row["classes"])
        data = json.loads(snap.read_text())
        oof = np.load(oof_path, allow_pickle=False)
        if len(oof) != len(data["ids"]) or given not in classes or predicted not in classes:
            raise StoreError("the training snapshot does not match the model: train again")
        guess = oof.argmax(axis=1)
        want = classes.index(predicted)
        return [i for i, name, g in zip(data["ids"], data["labels"], guess) if name == given and g == want]

    # -- predictions ------------------------------------------------------------------
    def predict(self, *, engine: str = "local", ray_address: str | None = None, workers: int | None = None) -> int:
        """Predict every present image; engine "ray" runs the classifier as Ray tasks over shards."""
        if engine == "ray":
            from organizer.engine_ray.predict import predict_store_ray

            return predict_store_ray(self.store, address=ray_address, workers=workers)
        if engine != "local":
            raise StoreError(f"unknown engine {engine!r}: use local or ray")
        from organizer.learn.model import predict_store

        return predict_store(self.store)

    def predictions(self, label: str | None = None, min_confidence: float = 0.0) -> list[Prediction]:
        sql = "SELECT image_id, label, best, confidence FROM predictions WHERE confidence >= ?"
        args: list = [min_confidence]
        if label is not None:
            sql += " AND label = ?"
            args.append(label)
        return [Prediction(*r) for r in self.store.db.execute(sql + " ORDER BY confidence DESC, image_id", args)]

    def prediction_counts(self) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in self.store.db.execute(
            "SELECT label, COUNT(*) FROM predictions GROUP BY label ORDER BY COUNT(*) DESC, label")]

    def embed_files(self, files: list[str]) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        """Embed files outside the library on the fly: (ok files, vectors, [(file, error)])."""
        from pathlib import Path

        from organizer.ingest.decode import DecodeError, decode_image

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
        from organizer.learn.model import load_model

        model = load_model(self.store)
        ok, vectors, errors = self.embed_files(files)
        rows = [{"file": f, "predicted": label, "best": best, "confidence": round(conf, 4)}
                for f, (label, best, conf, _) in zip(ok, model.predict(vectors))]
        return rows, errors

    # -- review -----------------------------------------------------------------------
    def review(self, limit: int = 20, strategy: str = "auto") -> list[ReviewItem]:
        """Images no person has checked yet that are worth asking about next (cluster-named ones
        too), with the model's held-out guess."""
        from organizer.learn.model import PERSON_SOURCES, load_model
        from organizer.learn.review import (STRATEGIES, far_from_group, held_out_proba, part_checks, select,
                                            select_random, with_checks_first)
        from organizer.store.vectors import load_vectors

        if strategy not in STRATEGIES:
            raise StoreError(f"unknown review strategy {strategy!r}: use {' or '.join(STRATEGIES)}")
        store = self.store
        model = load_model(store)
        rows = {r[0]: (r[1], r[2]) for r in store.db.execute("SELECT image_id, name, source FROM labels")}
        person = {i for i, (_, src) in rows.items() if src in PERSON_SOURCES}
        ids = [i for i in store.present_image_ids() if i not in person]
        if not ids or limit <= 0:
            return []
        if strategy == "random":  # seeded by the number of answers so far: reproducible, new each round
            ids = [ids[i] for i in select_random(len(ids), limit, seed=len(person))]
            _, X = load_vectors(store, ids)
            proba = held_out_proba(store, ids, model.predict_proba(X), model.classes)
            picked = np.arange(len(ids))
        else:
            _, X = load_vectors(store, ids)
            proba = held_out_proba(store, ids, model.predict_proba(X), model.classes)
            counts = collections.Counter(rows[i][0] for i in person)
            class_counts = np.array([counts.get(c, 0) for c in model.classes], np.float64)
            cluster_of = store.cluster_assignments()
            groups = np.array([cluster_of.get(i, (-1, 0))[0] if rows.get(i, (None, ""))[1] == "cluster" else -1
                               for i in ids], np.int64)
            col = {c: k for k, c in enumerate(model.classes)}
            named = np.array([col.get(rows[i][0], -1) if i in rows else -1 for i in ids], np.int64)
            # half the queue at most: the checks ask where the names may be wrong, the usual picks
            # where the model is unsure; neither should crowd the other out
            flat = np.array([cluster_of.get(i, (-1, 0))[0] for i in ids], np.int64)
            checks = part_checks(X, self._unchecked_parts(ids, rows, person, cluster_of), flat, limit // 2)
            picked = select(X, proba, class_counts, limit, far=far_from_group(X, groups), named=named)
            picked = with_checks_first(checks, picked, limit)
        paths = store.primary_paths([ids[i] for i in picked])
        out = []
        for i in picked:
            order = np.argsort(-proba[i])
            top = float(proba[i, order[0]])
            second = float(proba[i, order[1]]) if len(order) > 1 else 0.0
            out.append(ReviewItem(ids[i], paths[ids[i]], model.classes[order[0]], round(top, 4),
                                  model.classes[order[1]] if len(order) > 1 else None, round(top - second, 4),
                                  rows.get(ids[i], (None,))[0]))
        return out

    def _unchecked_parts(self, ids: list[str], labels: dict, person: set[str],
                         cluster_of: dict | None = None) -> np.ndarray:
        """Per id of ``ids``: the group-tree part it is in (a sub-group with no parts of its own,
        inside a flat cluster that carries a cluster name), or -1. Left out: parts where a person
        labeled any image, and each cluster's largest part while others of it are unchecked."""
        store = self.store
        cid = store.current_clustering_id()
        parts = np.full(len(ids), -1, np.int64)
        tree = store.cluster_tree(cid) if cid is not None else {}
        if not tree:
            return parts
        has_kids = {parent for parent, _, _ in tree.values()}
        def group_of(v):  # the flat cluster above a sub-group
            while v in tree and tree[v][1] == "sub-group":
                v = tree[v][0]
            return v if v in tree and tree[v][1] == "group" else -1
        leaf = {v: group_of(v) for v, (_, level, _) in tree.items() if level == "sub-group" and v not in has_kids}
        members: dict[int, list[str]] = collections.defaultdict(list)
        for image_id, node in store.db.execute(
                "SELECT image_id, node FROM cluster_members WHERE clustering_id=? AND node IS NOT NULL", (cid,)):
            if node in leaf:
                members[node].append(image_id)
        cluster_of = store.cluster_assignments(cid) if cluster_of is None else cluster_of
        named = {cluster_of[i][0] for i, (_, src) in labels.items() if src == "cluster" and i in cluster_of}
        largest = {}
        for v, ms in members.items():
            g = leaf[v]
            if g in named and len(ms) > len(members.get(largest.get(g), [])):
                largest[g] = v
        unchecked = {v for v, ms in members.items() if leaf[v] in named and not any(i in person for i in ms)}
        # the largest part waits until the group's other parts were checked: the name usually came
        # from it, but a person who named the group after a smaller part is asked about it then
        others = {leaf[v] for v in unchecked if v != largest.get(leaf[v])}
        keep = {v for v in unchecked if v != largest.get(leaf[v]) or leaf[v] not in others}
        where = {i: v for v in keep for i in members[v]}
        for r, image_id in enumerate(ids):
            parts[r] = where.get(image_id, -1)
        return parts

    def answer(self, image_ids, name: str) -> int:
        """A review answer becomes a label the next training uses: 'accepted' where it confirms the
        model's held-out guess (the one the review showed), 'manual' where the person gave another
        name (a correction is their own label). Returns how many images were answered."""
        name = clean_name(name)
        ids = self._known_ids(image_ids)
        guesses = self._held_out_guesses(ids)
        agree = [i for i in ids if guesses.get(i) == name]
        fixed = [i for i in ids if guesses.get(i) != name]
        said = sorted({guesses[i] for i in fixed if i in guesses})
        what = " and ".join(x for x in (
            f"confirmed “{name}” on {len(agree)} image(s)" if agree else "",
            f"corrected {len(fixed)} image(s) to “{name}”" + (f" (the model said “{'”, “'.join(said)}”)" if said else "")
            if fixed else "") if x)
        with self.store.action("review", what):
            return (self.store.set_labels(agree, name, "accepted") if agree else 0) + \
                (self.store.set_labels(fixed, name, "manual") if fixed else 0)

    def _held_out_guesses(self, ids: list[str]) -> dict[str, str]:
        """The current model's guess for each image as the review shows it: from the folds that did
        not train on the image ({} without a model)."""
        from organizer.learn.model import load_model
        from organizer.learn.review import held_out_proba
        from organizer.store.vectors import load_vectors

        if self.store.current_model() is None or not ids:
            return {}
        model = load_model(self.store)
        found, X = load_vectors(self.store, ids)
        proba = held_out_proba(self.store, found, model.predict_proba(X), model.classes)
        return {i: model.classes[int(k)] for i, k in zip(found, proba.argmax(axis=1))}

    def label_issues(self, limit: int | None = None, everything: bool = False) -> list[LabelIssue]:
        """Labeled images whose name looks wrong, most suspicious first."""
        from organizer.learn.label_issues import find_label_issues

        return find_label_issues(self.store, limit=limit, everything=everything)

    # -- history ----------------------------------------------------------------------
    def history(self, limit: int | None = 20, *, include_undone: bool = False):
        """The changes a person made, newest first (HistoryEntry: id, kind, summary, ...)."""
        from organizer.store.history import entries

        return entries(self.store, limit, include_undone=include_undone)

    def undo(self, n: int = 1, *, back_to: int | None = None):
        """Undo the last n changes (or all from entry `back_to` on); re-predicts if the model changed."""
        from organizer.store.history import touches_model, undo

        done = undo(self.store, n, back_to=back_to)
        if touches_model(done, self.store) and self.store.current_model() is not None:
            self.predict()
        return done
