"""Backbones: turn decoded images into L2-normalised float32 vectors.

Every embedder follows one small protocol (see `Embedder`), so the indexer, search and
naming code never care which network is behind it. Heavy imports (torch, timm,
open_clip) happen only when a backbone is actually built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneError(Exception):
    """A backbone that cannot be built or does not match the store; the message says what to do."""


@dataclass(frozen=True)
class Preprocess:
    """How pixels become a network input. Plain data, so decode workers can apply it."""

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, image: "Image.Image") -> np.ndarray:
        """Short side to `size` (bicubic), centre crop, normalise: a (3, size, size) float32 array."""
        from PIL import Image

        w, h = image.size
        scale = self.size / min(w, h)
        nw, nh = max(self.size, round(w * scale)), max(self.size, round(h * scale))
        image = image.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0)
        left, top = (nw - self.size) // 2, (nh - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        arr = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))


class Embedder(Protocol):
    name: str              # canonical backbone spec; the store records it and refuses to mix two
    dim: int
    preprocess: Preprocess
    has_text: bool

    def embed_arrays(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 3, H, W) float32 -> (L2-normalised float32 vectors, pre-normalisation norms)."""

    def embed(self, images: list["Image.Image"]) -> np.ndarray:
        """Convenience: PIL images -> (n, dim) L2-normalised float32."""


def l2_normalize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1)
    return x / np.maximum(norms, 1e-12)[:, None], norms


def get_embedder(spec: str = "auto", *, store_backbone: str | None = None, quiet: bool = False) -> Embedder:
    """Build the embedder for a backbone spec (see `organizer index --help`)."""
    from .registry import resolve

    return resolve(spec, store_backbone=store_backbone, quiet=quiet)
