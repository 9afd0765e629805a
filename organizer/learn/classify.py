"""Training the classifier: softmax regression on stored vectors (the file format is model.py).

Training uses three kinds of evidence, trusted differently:
  * labels a person gave one by one (`label`, review answers): clean, weighted MANUAL_WEIGHT;
  * cluster names: many but noisy (a cluster often mixes classes), so they only seed a label
    spreading over the kNN graph of all images, with CLUSTER_SEED of a person's strength;
  * unlabeled images: they carry the spreading between labeled ones.
The spread labels (weighted by how clear they are) plus the person's labels train a linear
model in a PCA space; PCA and the model fold into one (classes x dim) matrix, so a saved model
is still `softmax(X @ coef.T + intercept)`.

Metrics are out-of-fold (stratified k-fold; held-out images seed nothing and train nothing),
so they say how the model does on images it did not train on. Confidence is calibrated by a
temperature fitted on the out-of-fold logits; the "unknown" threshold is learned from the same
out-of-fold predictions (below it the model was no better than guessing), and a
person can set a threshold per class.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from organizer.learn.model import PERSON_SOURCES, LinearModel, TrainError, save_model
from organizer.store import Store, atomic_write

DEFAULT_C = 10.0      # inverse L2 strength; vectors are L2-normalised, so weights need room to grow
MANUAL_WEIGHT = 10.0  # a person's label outweighs a spread label (weight <= 1) and wins on its image
CLUSTER_SEED = 0.1    # a cluster name seeds the spreading at a tenth of a person's label
PCA_DIM = 128         # measured on cifar10: same accuracy as the full 1280-d vectors, 10x faster fits
SPREAD_K, SPREAD_ALPHA, SPREAD_STEPS = 10, 0.9, 20
MAX_NODES = 20_000    # images in the spreading graph (labeled first); bounds time on big libraries


# -- the learner ---------------------------------------------------------------------------------
def fit_softmax(Z: np.ndarray, y: np.ndarray, k: int, w: np.ndarray, C: float = DEFAULT_C,
                iters: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Weighted multinomial logistic regression (L-BFGS, float32): returns W (p, k) and b (k,)."""
    from scipy.optimize import minimize

    n, d = Z.shape
    Z = np.ascontiguousarray(Z, np.float32)
    w = w.astype(np.float32)
    Y = np.eye(k, dtype=np.float32)[y]

    def loss_grad(theta):
        W = theta[: d * k].astype(np.float32).reshape(d, k)
        b = theta[d * k:].astype(np.float32)
        logits = Z @ W + b
        logits -= logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits).sum(axis=1))
        P = np.exp(logits - lse[:, None])
        loss = float((w * (lse - (logits * Y).sum(axis=1))).sum() + 0.5 / C * (W * W).sum())
        G = (P - Y) * w[:, None]
        return loss, np.concatenate([(Z.T @ G + W / C).ravel(), G.sum(axis=0)]).astype(np.float64)

    r = minimize(loss_grad, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": iters})
    return r.x[: d * k].reshape(d, k).astype(np.float32), r.x[d * k:].astype(np.float32)


def pca(X: np.ndarray, dim: int = PCA_DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top principal directions (dim, d), fitted on at most 20k rows."""
    rows = X if len(X) <= 20_000 else X[np.random.default_rng(seed).choice(len(X), 20_000, replace=False)]
    mu = rows.mean(axis=0)
    _, _, vt = np.linalg.svd(rows - mu, full_matrices=False)
    return mu.astype(np.float32), vt[: min(dim, len(vt))].astype(np.float32)


def knn_graph(Z: np.ndarray, k: int = SPREAD_K):
    """Symmetric normalised kNN affinity (cosine^3, so near neighbours count most)."""
    import faiss
    import scipy.sparse as sp

    Zn = np.ascontiguousarray(Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12), np.float32)
    k = min(k, len(Z) - 1)
    if k < 1:
        return sp.csr_matrix((len(Z), len(Z)), dtype=np.float32)
    index = faiss.IndexFlatIP(Zn.shape[1])
    index.add(Zn)
    sim, nb = index.search(Zn, k + 1)
    rows = np.repeat(np.arange(len(Z)), k)
    W = sp.csr_matrix((np.maximum(sim[:, 1:], 0).ravel() ** 3, (rows, nb[:, 1:].ravel())), shape=(len(Z),) * 2)
    W = W + W.T
    deg = np.asarray(W.sum(axis=1)).ravel()
    d = sp.diags(1.0 / np.sqrt(np.maximum(deg, 1e-12)))
    return (d @ W @ d).tocsr()


def spread_and_fit(Z, S, seed_rows, seed_y, seed_person, k, *, train_mask=None, C=DEFAULT_C):
    """Label spreading from the seeds, then a linear fit on the spread labels and the person's labels."""
    Y = np.zeros((len(Z), k), np.float32)
    Y[seed_rows, seed_y] = np.where(seed_person, 1.0, CLUSTER_SEED)
    Y /= np.maximum(Y.sum(axis=0, keepdims=True), 1e-12)  # each class seeds with the same mass
    F = Y.copy()
    for _ in range(SPREAD_STEPS):
        F = SPREAD_ALPHA * (S @ F) + (1 - SPREAD_ALPHA) * Y
    total = F.sum(axis=1)
    target = F.argmax(axis=1)
    weight = np.where(total > 0, F.max(axis=1) / np.maximum(total, 1e-12), 0.0).astype(np.float32)
    person = seed_rows[seed_person]
    target[person] = seed_y[seed_person]  # an image a person labeled keeps that label, whatever spread
    weight[person] = MANUAL_WEIGHT
    if train_mask is not None:
        weight = weight * train_mask
    return fit_softmax(Z, target, k, weight, C)


def learn_threshold(confidence: np.ndarray, correct: np.ndarray, n_classes: int = 3) -> float:
    """Largest confidence below which out-of-fold predictions were no better than guessing:
    right less than twice as often as a blind pick among n_classes, and never more than a third.

    "Unknown" should mean the model is guessing. With 10 classes, answers right 30% of the
    time are three times chance and still the best guess a person gets; their agreement is
    also measured against cluster names, which are noisy, so the true accuracy is higher
    (cifar10 2k, 10 classes: the band a 1/3 rule hid was right 34.5% of the time against the
    truth, and hiding it cost 5 points of accuracy).

    The band must hold enough predictions (2% of them, at least 10) to be evidence: one
    unlucky low-confidence mistake should not turn a class of good answers into 'unknown'."""
    level = min(1 / 3, 2 / max(int(n_classes), 2))
    order = np.argsort(confidence)
    c, ok = confidence[order], correct[order].astype(np.float64)
    cum_acc = np.cumsum(ok) / np.arange(1, len(ok) + 1)
    min_band = max(10, int(0.02 * len(ok)))
    below = np.nonzero(cum_acc[min_band - 1:] < level)[0] + min_band - 1 if len(ok) >= min_band else []
    return float(c[below[-1]]) if len(below) else 0.0


def fold_ids(y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Stratified fold of every row; -1 for rows of classes too small to hold out (they always train)."""
    rng = np.random.default_rng(seed)
    out = np.full(len(y), -1)
    for c in np.unique(y):
        members = rng.permutation(np.nonzero(y == c)[0])
        if len(members) >= 2:
            out[members] = (np.arange(len(members)) + rng.integers(folds)) % folds
    return out


def metrics_of(y, pred, classes) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=range(len(classes)), zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "macro_f1": round(float(f1_score(y, pred, labels=sorted(set(y)), average="macro", zero_division=0)), 4),
        "per_class": {c: {"precision": round(float(prec[i]), 4), "recall": round(float(rec[i]), 4),
                          "f1": round(float(f1[i]), 4), "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion": confusion_matrix(y, pred, labels=range(len(classes))).tolist(),
    }


# -- training ------------------------------------------------------------------------------------
@dataclass
class TrainingSet:
    ids: list[str]            # graph nodes: labeled images first, then unlabeled ones
    X: np.ndarray
    n_labeled: int
    names: list[str]          # given names of the labeled nodes
    person: np.ndarray        # bool per labeled node: a person gave this label
    skipped: int = 0          # labeled images left out of the graph (only above MAX_NODES)


def training_set(store: Store, seed: int = 0) -> TrainingSet:
    from organizer.store.vectors import load_vectors

    rows = {r[0]: (r[1], r[2]) for r in store.db.execute("SELECT image_id, name, source FROM labels")}
    present = store.present_image_ids()
    labeled = [i for i in present if i in rows]
    rest = [i for i in present if i not in rows]
    rng = np.random.default_rng(seed)
    skipped = 0
    if len(labeled) > MAX_NODES:  # keep every person's label, sample the cluster-named rest
        person = [i for i in labeled if rows[i][1] in PERSON_SOURCES]
        named = [i for i in labeled if rows[i][1] not in PERSON_SOURCES]
        keep = max(0, MAX_NODES - len(person))
        pick = set(rng.choice(len(named), min(keep, len(named)), replace=False).tolist())
        skipped = len(labeled) - len(person) - len(pick)
        labeled = person + [i for j, i in enumerate(named) if j in pick]
    room = max(0, MAX_NODES - len(labeled))
    if len(rest) > room:
        rest = [rest[j] for j in sorted(rng.choice(len(rest), room, replace=False))]
    ids = labeled + rest
    _, X = load_vectors(store, ids)
    return TrainingSet(ids, X, len(labeled), [rows[i][0] for i in labeled],
                       np.array([rows[i][1] in PERSON_SOURCES for i in labeled], bool), skipped)


def train(store: Store, *, C: float = DEFAULT_C, threshold: float | None = None, force: bool = False) -> dict:
    from organizer.learn.calibration import fit_temperature, reliability, softmax
    from organizer.learn.versions import decide

    data = training_set(store)
    n_lab = data.n_labeled
    classes = sorted(set(data.names))
    if n_lab < 2 or len(classes) < 2:
        raise TrainError(f"training needs labeled images of at least two classes (have {n_lab} labeled "
                         f"image(s), {len(classes)} class(es)): name clusters or use `organizer label`")
    y = np.array([classes.index(n) for n in data.names])
    mu, V = pca(data.X)
    Z = (data.X - mu) @ V.T
    S = knn_graph(Z)
    seeds = np.arange(n_lab)
    k = len(classes)

    folds = fold_ids(y, 5)
    n_folds = int(folds.max()) + 1
    metrics: dict = {}
    oof_logits = None
    if n_folds >= 2:
        oof_logits = np.full((n_lab, k), np.nan, np.float32)
        for f in range(n_folds):
            held = np.nonzero(folds == f)[0]
            keep = folds != f
            mask = np.ones(len(Z), np.float32)
            mask[held] = 0.0  # held-out images neither seed the spreading nor train the model
            W, b = spread_and_fit(Z, S, seeds[keep], y[keep], data.person[keep], k, train_mask=mask, C=C)
            oof_logits[held] = Z[held] @ W + b
        has = folds >= 0
        pred = np.full(n_lab, -1)
        pred[has] = oof_logits[has].argmax(axis=1)
        metrics = {"folds": n_folds, **metrics_of(y[has], pred[has], classes),
                   "evaluated": int(has.sum())}
        if data.person[has].sum() >= 10:  # the person's own labels are the clean yardstick
            ph = has & data.person
            metrics["person_labels"] = {"n": int(ph.sum()),
                                        "accuracy": round(float((pred[ph] == y[ph]).mean()), 4)}
        temperature = fit_temperature(oof_logits[has], y[has])
        metrics["calibration"] = {"temperature": round(temperature, 4), **reliability(oof_logits[has], y[has])}
        cal = softmax(oof_logits[has], temperature)
        if threshold is None:
            threshold = learn_threshold(cal.max(axis=1), cal.argmax(axis=1) == y[has], k)
    else:
        temperature = 1.0
        metrics["note"] = "every class has a single example: no cross-validation"
    threshold = 0.0 if threshold is None else threshold

    W, b = spread_and_fit(Z, S, seeds, y, data.person, k, C=C)
    coef = ((V.T @ W).T / temperature).astype(np.float32)  # PCA, model and temperature in one matrix
    intercept = ((b - mu @ V.T @ W) / temperature).astype(np.float32)
    metrics.update(n_train=n_lab, n_person=int(data.person.sum()), n_graph=len(data.ids),
                   threshold=round(float(threshold), 4), C=C,
                   class_counts={c: int((y == i).sum()) for i, c in enumerate(classes)})
    if data.skipped:
        metrics["labeled_not_used"] = data.skipped
    model = LinearModel(classes, coef, intercept, store.backbone, float(threshold))
    snapshot = {"ids": data.ids[:n_lab], "labels": data.names}
    make_current, reason = decide(store, model, classes, snapshot, metrics, oof_logits, y, folds, force=force)
    metrics["decision"] = reason
    model_id = save_model(store, model, metrics, current=make_current)
    stem = store.models_dir / f"model-{model_id:05d}"
    if oof_logits is not None:  # out-of-fold probabilities and the images they belong to: review and the app use them
        oof = np.where(np.isnan(oof_logits), 0.0, softmax(np.nan_to_num(oof_logits), temperature))
        atomic_write(stem.with_name(stem.name + ".oof.npy"), lambda f: np.save(f, oof.astype(np.float32)))
    # atomic too: a kill mid-write must leave no half file for the app to choke on
    atomic_write(stem.with_name(stem.name + ".oof.json"), lambda f: f.write(json.dumps(snapshot).encode()))
    metrics.update(model_id=model_id, classes=classes, current=make_current)
    return metrics
