"""Suggested names for clusters.

With a CLIP backbone: zero-shot against a built-in vocabulary (everyday photo subjects plus
ImageNet's classes). With efficientnet-lite0: the ImageNet classes that dominate the
cluster's predictions, re-computed from stored vectors (the vector times its stored norm
is the pooled feature the ImageNet head was trained on)."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

TOP = 3


@lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    return resources.files("organizer.data").joinpath("imagenet_classes.txt").read_text().splitlines()


@lru_cache(maxsize=1)
def vocabulary() -> list[str]:
    text = resources.files("organizer.data").joinpath("vocabulary.txt").read_text()
    words = [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]
    return list(dict.fromkeys(words + imagenet_classes()))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _top(scores: np.ndarray, names: list[str], k: int = TOP) -> list[tuple[str, float]]:
    order = np.argsort(-scores)[:k]
    return [(names[i], round(float(scores[i]), 4)) for i in order]


MAX_NAMING_SAMPLE = 2000  # members per cluster whose ImageNet predictions are averaged


def suggest(embedder, vectors: np.ndarray, norms: np.ndarray, labels: np.ndarray) -> dict[int, list]:
    """{cluster: [(name, score), ...]} for every cluster id >= 0 in `labels`."""
    clusters = sorted(int(c) for c in set(labels.tolist()) if c >= 0)
    if not clusters:
        return {}
    if getattr(embedder, "has_text", False):
        names = vocabulary()
        text = embedder.embed_text([f"a photo of a {n}." for n in names])
        out = {}
        for c in clusters:
            centroid = vectors[labels == c].mean(axis=0)
            centroid /= max(np.linalg.norm(centroid), 1e-12)
            out[c] = _top(_softmax((100.0 * centroid @ text.T)[None])[0], names)
        return out
    weight, bias = embedder.head()
    names = imagenet_classes()
    out = {}
    rng = np.random.default_rng(0)
    for c in clusters:
        member = np.flatnonzero(labels == c)
        if len(member) > MAX_NAMING_SAMPLE:  # a seeded sample names a big cluster as well as all of it
            member = np.sort(rng.choice(member, MAX_NAMING_SAMPLE, replace=False))
        feats = vectors[member] * norms[member, None]
        out[c] = _top(_softmax(feats @ weight.T + bias).mean(axis=0), names)
    return out
