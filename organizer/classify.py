"""The classifier: logistic regression on stored vectors, saved as arrays + JSON (no pickle).

Metrics are out-of-fold (stratified k-fold), so they say how the model does on images it
did not train on. The "unknown" threshold is learned from the same out-of-fold
predictions: below it, the model's answers were more often wrong than right.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import numpy as np

from .store import Store, StoreError, dumps

DEFAULT_C = 10.0  # vectors are L2-normalised, so weights need room to grow (C=1 gives flat probabilities)


class TrainError(StoreError):
    pass


@dataclass
class LinearModel:
    classes: list[str]
    coef: np.ndarray        # (k, d) float32
    intercept: np.ndarray   # (k,) float32
    backbone: str
    threshold: float

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = X.astype(np.float32) @ self.coef.T + self.intercept
        if len(self.classes) == 2 and self.coef.shape[0] == 1:  # binary sklearn models have one row
            p1 = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.stack([1 - p1, p1], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> list[tuple[str, str, float, float]]:
        """(label or 'unknown', best class, confidence, margin) per row."""
        if len(X) == 0:
            return []
        p = self.predict_proba(X)
        order = np.argsort(-p, axis=1)
        top = p[np.arange(len(p)), order[:, 0]]
        second = p[np.arange(len(p)), order[:, 1]] if p.shape[1] > 1 else np.zeros(len(p))
        out = []
        for i in range(len(p)):
            best = self.classes[order[i, 0]]
            out.append((best if top[i] >= self.threshold else "unknown", best, float(top[i]),
                        float(top[i] - second[i])))
        return out


def _fit(X, y, C):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(X, y)


def learn_threshold(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Largest confidence below which out-of-fold predictions were right less than half the time.

    The band must hold enough predictions (2% of them, at least 10) to be evidence: one
    unlucky low-confidence mistake should not turn a class of good answers into 'unknown'."""
    order = np.argsort(confidence)
    c, ok = confidence[order], correct[order].astype(np.float64)
    cum_acc = np.cumsum(ok) / np.arange(1, len(ok) + 1)
    min_band = max(10, int(0.02 * len(ok)))
    below = np.nonzero(cum_acc[min_band - 1:] < 0.5)[0] + min_band - 1 if len(ok) >= min_band else []
    return float(c[below[-1]]) if len(below) else 0.0


def cross_validate(X, y, classes, C) -> tuple[dict, np.ndarray | None]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=len(classes))
    folds = int(min(5, counts.min()))
    if folds < 2:
        return {"note": "a class has a single example: no cross-validation"}, None
    proba = np.zeros((len(y), len(classes)), np.float32)
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=0).split(X, y):
        model = _fit(X[train_idx], y[train_idx], C)
        proba[np.ix_(test_idx, model.classes_)] = model.predict_proba(X[test_idx])
    pred = proba.argmax(axis=1)
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=range(len(classes)), zero_division=0)
    metrics = {
        "folds": folds,
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "macro_f1": round(float(f1_score(y, pred, average="macro", zero_division=0)), 4),
        "per_class": {c: {"precision": round(float(prec[i]), 4), "recall": round(float(rec[i]), 4),
                          "f1": round(float(f1[i]), 4), "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion": confusion_matrix(y, pred, labels=range(len(classes))).tolist(),
    }
    return metrics, proba


def train(store: Store, *, C: float = DEFAULT_C, threshold: float | None = None) -> dict:
    from .vectors import load_vectors

    labels = store.labels()
    present = set(store.present_image_ids())
    ids = sorted(i for i in labels if i in present)
    names = [labels[i] for i in ids]
    classes = sorted(set(names))
    if len(ids) < 2 or len(classes) < 2:
        raise TrainError(f"training needs labeled images of at least two classes (have {len(ids)} labeled "
                         f"image(s), {len(classes)} class(es)): name clusters or use `organizer label`")
    _, X = load_vectors(store, ids)
    y = np.array([classes.index(n) for n in names])
    metrics, oof = cross_validate(X, y, classes, C)
    if threshold is None:
        threshold = learn_threshold(oof.max(axis=1), oof.argmax(axis=1) == y) if oof is not None else 0.0
    model = _fit(X, y, C)
    coef = np.zeros((len(classes), X.shape[1]), np.float32)
    intercept = np.zeros(len(classes), np.float32)
    if len(classes) == 2:  # expand sklearn's single binary row into two softmax rows
        coef[1], intercept[1] = model.coef_[0] / 2, model.intercept_[0] / 2
        coef[0], intercept[0] = -coef[1], -intercept[1]
    else:
        coef[:], intercept[:] = model.coef_, model.intercept_
    metrics.update(n_train=len(ids), threshold=round(float(threshold), 4), C=C,
                   class_counts={c: int((y == i).sum()) for i, c in enumerate(classes)})
    model_id = save_model(store, LinearModel(classes, coef, intercept, store.backbone, float(threshold)), metrics)
    if oof is not None:  # out-of-fold probabilities and the images they belong to: review and the app use them
        np.save(store.models_dir / f"model-{model_id:05d}.oof.npy", oof)
        (store.models_dir / f"model-{model_id:05d}.oof.json").write_text(json.dumps({"ids": ids, "labels": names}))
    metrics["model_id"] = model_id
    metrics["classes"] = classes
    return metrics


def save_model(store: Store, model: LinearModel, metrics: dict) -> int:
    """Write arrays and JSON under temporary names, fsync, rename, then record the row."""
    store.models_dir.mkdir(parents=True, exist_ok=True)
    with store.transaction():
        model_id = (store.db.execute("SELECT MAX(id) FROM models").fetchone()[0] or 0) + 1
        stem = f"model-{model_id:05d}"
        arrays = store.models_dir / f"{stem}.npz"
        meta = store.models_dir / f"{stem}.json"
        _atomic_write(arrays, lambda f: np.savez(f, coef=model.coef, intercept=model.intercept))
        info = {"format": "organizer-linear-v1", "classes": model.classes, "backbone": model.backbone,
                "threshold": model.threshold, "dim": int(model.coef.shape[1]), "metrics": metrics,
                "created_at": time.time()}
        _atomic_write(meta, lambda f: f.write(json.dumps(info, indent=1).encode()))
        store.db.execute("UPDATE models SET current=0")
        store.db.execute("INSERT INTO models(id, created_at, backbone, classes, metrics, path, n_train, current) "
                         "VALUES(?,?,?,?,?,?,?,1)", (model_id, time.time(), model.backbone, dumps(model.classes),
                                                     dumps(metrics), stem, metrics.get("n_train", 0)))
    return model_id


def _atomic_write(path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_model(store: Store, model_id: int | None = None) -> LinearModel:
    row = (store.db.execute("SELECT * FROM models WHERE id=?", (model_id,)).fetchone() if model_id
           else store.current_model())
    if row is None:
        raise TrainError("no trained model yet: run `organizer train` first")
    stem = store.models_dir / row["path"]
    try:
        info = json.loads((stem.with_suffix(".json")).read_text())
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as arrays:
            coef, intercept = arrays["coef"].astype(np.float32), arrays["intercept"].astype(np.float32)
    except (OSError, ValueError, KeyError) as e:
        raise TrainError(f"model file {stem}.npz/.json cannot be read ({e}): run `organizer train` again") from e
    if info.get("format") != "organizer-linear-v1" or coef.shape != (len(info["classes"]), info["dim"]):
        raise TrainError(f"model file {stem}.npz is not an organizer model: run `organizer train` again")
    if info["backbone"] != store.backbone:
        raise TrainError(f"the model was trained on {info['backbone']} vectors but the store holds "
                         f"{store.backbone} vectors: run `organizer train` again")
    return LinearModel(info["classes"], coef, intercept, info["backbone"], float(info["threshold"]))


def predict_store(store: Store) -> int:
    """Predict every present image and store the results (replacing older predictions)."""
    from .vectors import load_vectors

    model = load_model(store)
    model_id = store.current_model()["id"]
    ids, X = load_vectors(store)
    now = time.time()
    rows = [(i, model_id, label, best, conf, margin, now)
            for i, (label, best, conf, margin) in zip(ids, model.predict(X))]
    with store.transaction():
        store.db.execute("DELETE FROM predictions")
        store.db.executemany("INSERT INTO predictions(image_id, model_id, label, best, confidence, margin, "
                             "created_at) VALUES(?,?,?,?,?,?,?)", rows)
    return len(rows)
