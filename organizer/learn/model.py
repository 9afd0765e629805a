"""The classifier's file format and its use: a linear model saved as arrays + JSON (no pickle),
loaded back with checks, and predicting the whole library.

A model file is `models/model-NNNNN.npz` (coef, intercept) beside `.json` (format, classes,
backbone, threshold, metrics); prediction is `softmax(X @ coef.T + intercept)`."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from organizer.store import Store, StoreError, atomic_write, dumps

PERSON_SOURCES = ("manual", "accepted")  # labels a person gave (not only their cluster's name)


class TrainError(StoreError):
    pass


@dataclass
class LinearModel:
    classes: list[str]
    coef: np.ndarray        # (k, d) float32
    intercept: np.ndarray   # (k,) float32
    backbone: str
    threshold: float
    class_thresholds: dict = field(default_factory=dict)  # per-class override of `threshold`

    def logits(self, X: np.ndarray) -> np.ndarray:
        return X.astype(np.float32) @ self.coef.T + self.intercept

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = self.logits(X)
        if len(self.classes) == 2 and self.coef.shape[0] == 1:  # binary sklearn models have one row
            p1 = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.stack([1 - p1, p1], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def threshold_for(self, name: str) -> float:
        return float(self.class_thresholds.get(name, self.threshold))

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
            out.append((best if top[i] >= self.threshold_for(best) else "unknown", best, float(top[i]),
                        float(top[i] - second[i])))
        return out


def class_thresholds(store: Store) -> dict[str, float]:
    """Per-class thresholds a person set (kept across model versions: they are a preference)."""
    return json.loads(store.get_meta("class_thresholds") or "{}")


def set_class_threshold(store: Store, name: str, value: float | None) -> dict[str, float]:
    if value is not None and not 0.0 <= value <= 1.0:
        raise TrainError(f"a threshold is a confidence between 0 and 1, not {value}")
    current = class_thresholds(store)
    if value is None:
        current.pop(name, None)
    else:
        current[name] = float(value)
    store.set_meta("class_thresholds", json.dumps(current, sort_keys=True))
    return current



def save_model(store: Store, model: LinearModel, metrics: dict, *, current: bool = True) -> int:
    """Write arrays and JSON under temporary names, fsync, rename, then record the row."""
    store.models_dir.mkdir(parents=True, exist_ok=True)
    with store.transaction():
        model_id = (store.db.execute("SELECT MAX(id) FROM models").fetchone()[0] or 0) + 1
        stem = f"model-{model_id:05d}"
        arrays = store.models_dir / f"{stem}.npz"
        meta = store.models_dir / f"{stem}.json"
        atomic_write(arrays, lambda f: np.savez(f, coef=model.coef, intercept=model.intercept))
        info = {"format": "organizer-linear-v1", "classes": model.classes, "backbone": model.backbone,
                "threshold": model.threshold, "dim": int(model.coef.shape[1]), "metrics": metrics,
                "created_at": time.time()}
        atomic_write(meta, lambda f: f.write(json.dumps(info, indent=1).encode()))
        if current:
            store.db.execute("UPDATE models SET current=0")
        store.db.execute("INSERT INTO models(id, created_at, backbone, classes, metrics, path, n_train, current) "
                         "VALUES(?,?,?,?,?,?,?,?)", (model_id, time.time(), model.backbone, dumps(model.classes),
                                                     dumps(metrics), stem, metrics.get("n_train", 0), int(current)))
    return model_id


def load_model(store: Store, model_id: int | None = None) -> LinearModel:
    row = (store.db.execute("SELECT * FROM models WHERE id=?", (model_id,)).fetchone() if model_id
           else store.current_model())
    if row is None:
        raise TrainError(f"no model {model_id}: see `organizer models`" if model_id
                         else "no trained model yet: run `organizer train` first")
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
    return LinearModel(info["classes"], coef, intercept, info["backbone"], float(info["threshold"]),
                       {c: v for c, v in class_thresholds(store).items() if c in info["classes"]})


def predict_store(store: Store) -> int:
    """Predict every present image with the current model and store the results (replacing older ones)."""
    from organizer.store.vectors import load_vectors

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
