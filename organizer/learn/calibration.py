"""Calibrated confidence: temperature scaling fitted on out-of-fold logits.

A confidence of 0.8 should be right about 80% of the time. Logistic regression trained on
few, partly noisy labels is over-confident, so one scalar T divides the logits before the
softmax; T is chosen to minimise the negative log-likelihood of out-of-fold predictions.
Reliability is reported as expected calibration error (ECE) on held-out rows: T is fitted
on one half of the out-of-fold rows and measured on the other half, and the other way round."""
from __future__ import annotations

import numpy as np

BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ece(proba: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: |accuracy - confidence| averaged over equal-width bins."""
    if len(y) == 0:
        return 0.0
    conf = proba.max(axis=1)
    ok = proba.argmax(axis=1) == y
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() * abs(ok[m].mean() - conf[m].mean())
    return float(total / len(y))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.3, 20] that minimises the NLL of softmax(logits / T) (1.0 when there is nothing to fit).

    The lower bound stops a perfectly separated training set from sharpening every answer to 100%."""
    from scipy.optimize import minimize_scalar

    if len(y) < 2:
        return 1.0

    def nll(log_t):
        p = softmax(logits, float(np.exp(log_t)))
        return -float(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())

    r = minimize_scalar(nll, bounds=(np.log(0.3), np.log(20.0)), method="bounded")
    return float(np.exp(r.x)) if r.success else 1.0


def reliability(logits: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    """Held-out ECE before and after temperature scaling (two-way split of the out-of-fold rows)."""
    n = len(y)
    if n < 20:
        return {"note": "too few out-of-fold predictions to measure calibration"}
    perm = np.random.default_rng(seed).permutation(n)
    halves = [perm[: n // 2], perm[n // 2:]]
    before, after = [], []
    for fit_idx, test_idx in (halves, halves[::-1]):
        t = fit_temperature(logits[fit_idx], y[fit_idx])
        before.append(ece(softmax(logits[test_idx]), y[test_idx]))
        after.append(ece(softmax(logits[test_idx], t), y[test_idx]))
    return {"ece_before": round(float(np.mean(before)), 4), "ece_after": round(float(np.mean(after)), 4),
            "bins": BINS, "held_out": n}
