"""Model versions: every `train` records one; a new one becomes current only when it is not worse.

"Not worse" must be judged on the same evidence for both models:
  * Same classes: both are scored on the images whose label is new or changed since the current
    model was trained. The current model never learned those labels and the new model's
    out-of-fold predictions never saw them, so neither is favoured. The new version is kept back
    only when the old one is right on clearly more of them (a paired count: the images where
    exactly one of the two is right; "clearly" = by more than twice the square root of that count,
    a sign test at about 95%: 30 answers picked for being hard are too few to call a 7-to-2 split).
    With no new or changed labels the two trained on identical labels, and their cross-validated
    macro-F1 (same folds) decide.
  * Different classes: macro-F1 over different class sets is not comparable (a model with fewer
    classes cannot miss a class it does not know). A class the person has labeled must be
    predictable, and a class whose labels were all removed must stop being predicted, so a version
    whose classes differ becomes current.
`train --force` and `organizer models --use ID` override the rule.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from organizer.store import Store, StoreError


def _macro_f1(y, pred) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, labels=sorted(set(y.tolist())), average="macro", zero_division=0))


def decide(store: Store, model, classes, snapshot, metrics, oof_logits, y, folds, *, force=False):
    """(make it current?, reason) for a freshly trained model; also records the comparison in metrics."""
    from organizer.learn.model import TrainError, load_model
    from organizer.store.vectors import load_vectors

    row = store.current_model()
    if force:
        return True, "made current by --force"
    if row is None:
        return True, "first model"
    old_classes = json.loads(row["classes"])
    added = sorted(set(classes) - set(old_classes))
    removed = sorted(set(old_classes) - set(classes))
    if added or removed:
        parts = ([f"adds {', '.join(added)}"] if added else []) + ([f"drops {', '.join(removed)}"] if removed else [])
        return True, "classes changed (" + "; ".join(parts) + "): a labeled class must be predictable"
    old_metrics = json.loads(row["metrics"])
    if oof_logits is None:
        return True, "no cross-validation possible (a class has a single example)"
    try:
        old_model = load_model(store, row["id"])
        old_snap = json.loads((store.models_dir / f"{row['path']}.oof.json").read_text())
    except (TrainError, OSError, ValueError):
        return True, f"current model {row['id']} cannot be read: replaced"
    before = dict(zip(old_snap["ids"], old_snap["labels"]))
    changed = np.array([before.get(i) != name for i, name in zip(snapshot["ids"], snapshot["labels"])])
    changed &= folds >= 0
    idx = np.nonzero(changed)[0]
    if len(idx):
        _, X = load_vectors(store, [snapshot["ids"][i] for i in idx])
        old_pred = np.array([classes.index(b) for _, b, _, _ in old_model.predict(X)])
        new_pred = oof_logits[idx].argmax(axis=1)
        old_f1, new_f1 = _macro_f1(y[idx], old_pred), _macro_f1(y[idx], new_pred)
        # A paired count on the same images: a few dozen new answers make macro-F1 jumpy, and a model
        # that learned the person's new answers must not lose to the old one on a coin flip.
        old_only = int(((old_pred == y[idx]) & (new_pred != y[idx])).sum())
        new_only = int(((new_pred == y[idx]) & (old_pred != y[idx])).sum())
        metrics["compared"] = {"on": "new or changed labels", "images": int(len(idx)), "model": row["id"],
                               "previous_macro_f1": round(old_f1, 4), "new_macro_f1": round(new_f1, 4),
                               "only_previous_right": old_only, "only_new_right": new_only}
        if old_only - new_only <= 2.0 * np.sqrt(old_only + new_only):
            return True, (f"not worse than model {row['id']} on {len(idx)} new or changed labels "
                          f"(right where the other is wrong: new {new_only}, previous {old_only})")
        return False, (f"kept model {row['id']}: on {len(idx)} new or changed labels it was right on {old_only} "
                       f"where the new one was wrong, against {new_only} (use `organizer models --use ID` "
                       f"or `train --force`)")
    old_f1, new_f1 = old_metrics.get("macro_f1", 0.0), metrics.get("macro_f1", 0.0)
    metrics["compared"] = {"on": "same labels, cross-validated", "model": row["id"],
                           "previous_macro_f1": old_f1, "new_macro_f1": new_f1}
    if new_f1 + 1e-9 >= old_f1:
        return True, f"macro-F1 {new_f1:.3f} >= {old_f1:.3f} of model {row['id']} ({metrics['compared']['on']})"
    return False, (f"kept model {row['id']}: macro-F1 {new_f1:.3f} < {old_f1:.3f} on "
                   f"{metrics['compared']['on']} (use `organizer models --use ID` or `train --force`)")


@dataclass
class ModelInfo:
    """One trained model version."""
    id: int
    created: float                  # unix time
    n_labels: int                   # images it was trained on
    n_person: int | None            # of them, labeled by a person (not only by their cluster's name)
    classes: list[str]
    accuracy: float | None          # cross-validated, out of fold
    macro_f1: float | None
    ece: float | None               # calibration error after temperature scaling
    current: bool
    decision: str                   # why it is (or is not) the current one
    metrics: dict = field(repr=False, default_factory=dict)  # the whole report: per class, confusion, ...


def list_versions(store: Store) -> list[ModelInfo]:
    out = []
    for r in store.db.execute("SELECT id, created_at, classes, metrics, n_train, current FROM models ORDER BY id"):
        m = json.loads(r["metrics"])
        cal = m.get("calibration", {})
        out.append(ModelInfo(r["id"], r["created_at"], r["n_train"], m.get("n_person"), json.loads(r["classes"]),
                             m.get("accuracy"), m.get("macro_f1"), cal.get("ece_after"), bool(r["current"]),
                             m.get("decision", ""), m))
    return out


def use_version(store: Store, model_id: int) -> None:
    """Make a recorded version current (a rollback, or a forward roll to a kept-back version)."""
    from organizer.learn.model import load_model

    if not store.db.execute("SELECT 1 FROM models WHERE id=?", (model_id,)).fetchone():
        raise StoreError(f"no model {model_id}: see `organizer models`")
    load_model(store, model_id)  # refuse a version whose files are gone or from another backbone
    with store.transaction():
        store.db.execute("UPDATE models SET current = (id = ?)", (model_id,))
