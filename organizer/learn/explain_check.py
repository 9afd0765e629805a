"""Deletion test: is a map about the image's evidence, or decoration?

For each centre crop, blank the FRACTION of pixels the map
of the predicted label ranks highest, and measure how far the predicted label's probability
falls. The same is done for controls that must fall less if the map means anything:
  random_region  a random map of the same grid, upsampled the same way (blobs of the same
                 smoothness, at random places);
  random_pixels  the same number of pixels scattered at random;
  wrong_label    the map the same method draws for another class, chosen at random.
Blanked pixels take the crop's blurred value (fill="blur", the default) or its mean colour
("mean"). Blur removes detail without adding texture; a mean fill scattered over random pixels
adds a dense pattern of grey dots, which a CNN reacts to as a strong signal of its own, so the
random-pixel control then measures that artefact as much as lost evidence. Both are reported by
benchmarks/explain_quality.py.
Used by benchmarks/explain_quality.py and tests/test_explain.py."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FRACTION = 0.2
TIE = 1e-3  # probability changes smaller than this are not counted as either side winning


@dataclass
class DeletionResult:
    n: int
    base_confidence: float     # mean probability of the predicted label before blanking
    drop_map: float            # mean fall of the predicted label's probability
    drop_random_region: float
    drop_random_pixels: float
    drop_wrong_label: float
    # fraction of images where the map's fall beats the control's by more than TIE, and where the
    # control's beats the map's (a confident model often moves by less than that: a tie, in neither)
    holds_vs_random_region: float
    holds_vs_random_pixels: float
    holds_vs_wrong_label: float
    reversed_vs_random_region: float
    reversed_vs_random_pixels: float
    reversed_vs_wrong_label: float
    # the same in log-probability: a confident model's probability barely moves from 0.999, its log does
    logdrop_map: float = 0.0
    logdrop_random_region: float = 0.0
    logdrop_random_pixels: float = 0.0
    logdrop_wrong_label: float = 0.0

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _upsample(cams: np.ndarray, size: int) -> np.ndarray:
    from organizer.learn.explain import render

    return np.stack([render(c, (0.0, 0.0, 1.0, 1.0), size, size) for c in cams])


def top_mask(values: np.ndarray, fraction: float, rng) -> np.ndarray:
    """Boolean mask of the `fraction` highest pixels; ties (a flat zero region) broken at random."""
    flat = values.ravel() + rng.uniform(0, 1e-6, values.size)
    k = int(round(fraction * values.size))
    mask = np.zeros(values.size, bool)
    mask[np.argpartition(-flat, k - 1)[:k]] = True
    return mask.reshape(values.shape)


def filler(crop: np.ndarray, fill: str) -> np.ndarray:
    """What blanked pixels become: the crop's mean colour, or the crop heavily blurred."""
    if fill == "mean":
        return np.broadcast_to(crop.reshape(-1, 3).mean(0).round().astype(np.uint8), crop.shape)
    if fill == "blur":
        from PIL import Image, ImageFilter

        radius = crop.shape[0] / 16  # 14 px at 224: objects' parts are gone, the colours stay
        return np.asarray(Image.fromarray(crop).filter(ImageFilter.GaussianBlur(radius)))
    raise ValueError(f"unknown fill {fill!r}: use mean or blur")


def deletion_test(explainer, crops: np.ndarray, *, fraction: float = FRACTION, fill: str = "blur", seed: int = 0,
                  batch: int = 8) -> tuple[DeletionResult, dict]:
    """crops (n, S, S, 3) uint8 -> (summary, per-image arrays)."""
    rng = np.random.default_rng(seed)
    n, size = len(crops), crops.shape[1]
    k = len(explainer.model.classes)
    base = explainer.proba(crops)
    pred = base.argmax(1)
    wrong = (pred + rng.integers(1, k, n)) % k
    cams = []
    for i in range(0, n, batch):
        cams.append(explainer.maps(crops[i:i + batch], np.stack([pred[i:i + batch], wrong[i:i + batch]], 1))[0])
    cams = np.concatenate(cams)
    grid = cams.shape[-2:]
    variants = []
    for i in range(n):
        own, other = _upsample(cams[i], size)
        random_map = _upsample(rng.uniform(0, 1, (1, *grid)).astype(np.float32), size)[0]
        masks = [top_mask(own, fraction, rng), top_mask(random_map, fraction, rng),
                 top_mask(rng.uniform(0, 1, (size, size)), fraction, rng), top_mask(other, fraction, rng)]
        blank = filler(crops[i], fill)
        for m in masks:
            v = crops[i].copy()
            v[m] = blank[m]
            variants.append(v)
    after = explainer.proba(np.stack(variants)).reshape(n, 4, k)
    p0 = base[np.arange(n), pred]
    p1 = after[np.arange(n), :, pred]  # (n, 4): map, random region, random pixels, wrong label's map
    drops = p0[:, None] - p1
    logdrops = np.log(np.maximum(p0, 1e-12))[:, None] - np.log(np.maximum(p1, 1e-12))
    result = DeletionResult(n, float(p0.mean()), *_summary(drops), *logdrops.mean(0).tolist())
    return result, {"pred": pred, "wrong": wrong, "base": p0, "drops": drops, "logdrops": logdrops}


def _summary(d: np.ndarray) -> list[float]:
    own, region, pixels, other = d.T
    controls = (region, pixels, other)
    return ([float(x.mean()) for x in (own, *controls)] + [float((own - c > TIE).mean()) for c in controls]
            + [float((c - own > TIE).mean()) for c in controls])
