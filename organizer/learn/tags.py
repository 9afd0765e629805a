"""Multi-label tags: besides its one class, an image can carry any number of tags.

Tags attach to images (content hashes) like labels do, so they survive renames and moves.
`train` fits one logistic model per tag (one-vs-rest) on the stored vectors. Which images
count as negatives: those a person tagged with something else, i.e. images they looked at; an
untagged image is unknown, not a "no" (with `untagged_negative=True` it is taken as a "no",
for libraries where every image without a tag really lacks it). Each tag's threshold maximises
F1 on out-of-fold scores, and precision, recall and F1 are reported at that threshold.
Models are saved as arrays (.npz) plus JSON, never pickled.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from organizer.store import Store, StoreError, atomic_write, dumps

DEFAULT_C = 10.0        # as in classify: vectors are L2-normalised, weights need room
MIN_EXAMPLES = 3        # positives and negatives a tag needs before it gets a model
FORMAT = "organizer-tags-v1"


def clean_tag(tag: str) -> str:
    tag = " ".join(str(tag).split())
    if not tag:
        raise StoreError("a tag cannot be empty")
    if ";" in tag:
        raise StoreError(f"tag {tag!r} contains ';', which separates tags in exports: choose another name")
    if len(tag) > 100:
        raise StoreError("a tag is limited to 100 characters")
    return tag


# -- manual tags -----------------------------------------------------------------------
def add_tags(store: Store, image_ids: list[str], tags: list[str]) -> int:
    """Add every tag to every image; returns how many (image, tag) pairs are new."""
    tags = [clean_tag(t) for t in tags]
    now = time.time()
    with store.transaction():
        before = store.db.total_changes
        store.db.executemany("INSERT OR IGNORE INTO tags(image_id, tag, created_at) VALUES(?,?,?)",
                             [(i, t, now) for i in image_ids for t in tags])
        return store.db.total_changes - before


def remove_tags(store: Store, image_ids: list[str], tags: list[str]) -> int:
    tags = [clean_tag(t) for t in tags]
    with store.transaction():
        before = store.db.total_changes
        store.db.executemany("DELETE FROM tags WHERE image_id=? AND tag=?", [(i, t) for i in image_ids for t in tags])
        return store.db.total_changes - before


def image_tags(store: Store) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for image_id, tag in store.db.execute("SELECT image_id, tag FROM tags"):
        out.setdefault(image_id, set()).add(tag)
    return out


def tag_summary(store: Store) -> list[dict]:
    """Every tag: images carrying it (present ones), images predicted to, and the current model's metrics."""
    present = ("EXISTS (SELECT 1 FROM files f WHERE f.image_id = {t}.image_id AND f.status='ok')")
    given = dict(store.db.execute(f"SELECT tag, COUNT(*) FROM tags t WHERE {present.format(t='t')} GROUP BY tag"))
    predicted = dict(store.db.execute(
        f"SELECT tag, COUNT(*) FROM tag_predictions p WHERE {present.format(t='p')} GROUP BY tag"))
    row = current_row(store)
    per_tag = json.loads(row["metrics"]).get("per_tag", {}) if row else {}
    out = []
    for tag in sorted(set(given) | set(predicted) | set(per_tag)):
        m = per_tag.get(tag, {})
        out.append({"tag": tag, "images": given.get(tag, 0), "predicted": predicted.get(tag, 0),
                    **{k: m.get(k) for k in ("precision", "recall", "f1", "threshold")}})
    return out


# -- training --------------------------------------------------------------------------
@dataclass
class TagModel:
    tags: list[str]
    coef: np.ndarray        # (t, d) float32
    intercept: np.ndarray   # (t,) float32
    thresholds: np.ndarray  # (t,) float32, on the probability scale
    backbone: str

    def scores(self, X: np.ndarray) -> np.ndarray:
        z = X.astype(np.float32) @ self.coef.T + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def best_threshold(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, float]:
    """(threshold, precision, recall, F1) of the cut with the highest F1 when `score >= threshold`
    means yes. The threshold sits halfway to the next lower score, so a new image scoring a
    little below the last accepted training score is not rejected by accident."""
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order].astype(np.float64)
    tp = np.cumsum(t)
    n_pos = max(t.sum(), 1.0)
    precision = tp / np.arange(1, len(t) + 1)
    recall = tp / n_pos
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    last = np.r_[s[1:] < s[:-1], True]  # a cut can only fall between different scores
    f1 = np.where(last, f1, -1.0)
    i = int(np.argmax(f1))
    threshold = float(s[i]) if i + 1 >= len(s) else float((s[i] + s[i + 1]) / 2)
    return threshold, float(precision[i]), float(recall[i]), float(max(f1[i], 0.0))


def _fit(X, y, C):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(X, y)


def _oof_scores(X, y, C) -> tuple[np.ndarray, int]:
    from sklearn.model_selection import StratifiedKFold

    folds = int(min(5, y.sum(), (1 - y).sum()))
    out = np.zeros(len(y), np.float64)
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=0).split(X, y):
        out[test_idx] = _fit(X[train_idx], y[train_idx], C).predict_proba(X[test_idx])[:, 1]
    return out, folds


def train(store: Store, *, untagged_negative: bool = False, C: float = DEFAULT_C) -> dict:
    from organizer.store.vectors import load_vectors

    given = image_tags(store)
    present = store.present_image_ids()
    universe = present if untagged_negative else [i for i in present if i in given]
    counts: dict[str, int] = {}
    for i in universe:
        for t in given.get(i, ()):
            counts[t] = counts.get(t, 0) + 1
    if not counts:
        raise StoreError("no tagged images yet: tag some with `organizer tag PATH... --add TAG`")
    _, X = load_vectors(store, universe)
    per_tag, skipped, rows = {}, {}, []
    for tag in sorted(counts):
        y = np.array([tag in given.get(i, ()) for i in universe], np.int64)
        pos, neg = int(y.sum()), int(len(y) - y.sum())
        if pos < MIN_EXAMPLES or neg < MIN_EXAMPLES:
            skipped[tag] = (f"{pos} image(s) with it and {neg} without; each side needs {MIN_EXAMPLES}"
                            + ("" if untagged_negative or neg >= MIN_EXAMPLES else
                               " (untagged images are not negatives: tag other images too, or use "
                               "--untagged-negative)"))
            continue
        oof, folds = _oof_scores(X, y, C)
        threshold, p, r, f1 = best_threshold(oof, y)
        model = _fit(X, y, C)
        rows.append((tag, model.coef_[0], model.intercept_[0], threshold))
        per_tag[tag] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4),
                        "threshold": round(threshold, 4), "positives": pos, "negatives": neg, "folds": folds}
    metrics = {"per_tag": per_tag, "skipped": skipped, "n_train": len(universe),
               "untagged_negative": untagged_negative, "C": C}
    if not rows:
        raise StoreError("no tag has enough examples to train: " +
                         "; ".join(f"{t}: {why}" for t, why in skipped.items()))
    model = TagModel([r[0] for r in rows], np.array([r[1] for r in rows], np.float32),
                     np.array([r[2] for r in rows], np.float32), np.array([r[3] for r in rows], np.float32),
                     store.backbone)
    metrics["model_id"] = save_model(store, model, metrics)
    return metrics


def save_model(store: Store, model: TagModel, metrics: dict) -> int:
    """Arrays and JSON under temporary names, fsynced and renamed, then the row that makes it current."""
    store.models_dir.mkdir(parents=True, exist_ok=True)
    with store.transaction():
        model_id = (store.db.execute("SELECT MAX(id) FROM tag_models").fetchone()[0] or 0) + 1
        stem = f"tags-{model_id:05d}"
        atomic_write(store.models_dir / f"{stem}.npz", lambda f: np.savez(
            f, coef=model.coef, intercept=model.intercept, thresholds=model.thresholds))
        info = {"format": FORMAT, "tags": model.tags, "backbone": model.backbone, "dim": int(model.coef.shape[1]),
                "thresholds": [float(t) for t in model.thresholds], "metrics": metrics, "created_at": time.time()}
        atomic_write(store.models_dir / f"{stem}.json", lambda f: f.write(json.dumps(info, indent=1).encode()))
        store.db.execute("UPDATE tag_models SET current=0")
        store.db.execute("INSERT INTO tag_models(id, created_at, backbone, tags, metrics, path, n_train, current) "
                         "VALUES(?,?,?,?,?,?,?,1)", (model_id, time.time(), model.backbone, dumps(model.tags),
                                                     dumps(metrics), stem, metrics["n_train"]))
    return model_id


def current_row(store: Store):
    return store.db.execute("SELECT * FROM tag_models WHERE current=1 ORDER BY id DESC LIMIT 1").fetchone()


def load_model(store: Store) -> tuple[int, TagModel]:
    row = current_row(store)
    if row is None:
        raise StoreError("no tag model yet: run `organizer train-tags` first")
    stem = store.models_dir / row["path"]
    try:
        info = json.loads(stem.with_suffix(".json").read_text())
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as a:
            coef, intercept, thresholds = (a[k].astype(np.float32) for k in ("coef", "intercept", "thresholds"))
    except (OSError, ValueError, KeyError) as e:
        raise StoreError(f"tag model {stem}.npz/.json cannot be read ({e}): run `organizer train-tags` again") from e
    n = len(info.get("tags", []))
    if info.get("format") != FORMAT or coef.shape != (n, info.get("dim")) or intercept.shape != (n,) \
            or thresholds.shape != (n,):
        raise StoreError(f"{stem}.npz is not an organizer tag model: run `organizer train-tags` again")
    if info["backbone"] != store.backbone:
        raise StoreError(f"the tag model was trained on {info['backbone']} vectors but the store holds "
                         f"{store.backbone} vectors: run `organizer train-tags` again")
    return row["id"], TagModel(info["tags"], coef, intercept, thresholds, info["backbone"])


def predict(store: Store, chunk: int = 8192) -> dict[str, int]:
    """Score every present image with the current tag model and store the tags that pass their
    threshold (replacing earlier predictions). Returns images per predicted tag."""
    from organizer.store.vectors import load_vectors

    model_id, model = load_model(store)
    ids = store.present_image_ids()
    rows = []
    for start in range(0, len(ids), chunk):  # bounded memory on large libraries
        part, X = load_vectors(store, ids[start:start + chunk])
        S = model.scores(X)
        for r, c in zip(*np.nonzero(S >= model.thresholds)):
            rows.append((part[r], model.tags[c], float(S[r, c]), model_id))
    with store.transaction():
        store.db.execute("DELETE FROM tag_predictions")
        store.db.executemany("INSERT INTO tag_predictions(image_id, tag, score, model_id) VALUES(?,?,?,?)", rows)
    counts = {t: 0 for t in model.tags}
    for r in rows:
        counts[r[1]] += 1
    return counts


def export_columns(store: Store) -> dict[str, dict[str, str]]:
    """For export: image_id -> {"tags": "a;b", "predicted_tags": "c"} for every image a present
    file shows (empty strings when it has none), tags sorted by name."""
    ids = {r[0] for r in store.db.execute(
        "SELECT DISTINCT image_id FROM files WHERE status='ok' AND image_id IS NOT NULL")}
    given = image_tags(store)
    predicted: dict[str, set[str]] = {}
    for image_id, tag in store.db.execute("SELECT image_id, tag FROM tag_predictions"):
        predicted.setdefault(image_id, set()).add(tag)
    return {i: {"tags": ";".join(sorted(given.get(i, ()))), "predicted_tags": ";".join(sorted(predicted.get(i, ())))}
            for i in ids}
