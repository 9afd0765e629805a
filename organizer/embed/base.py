"""Shared torch plumbing for the backbones."""
from __future__ import annotations

import numpy as np

from . import Preprocess, l2_normalize


class TorchEmbedder:
    """Runs an image tower eagerly on the CPU in channels-last layout (faster for convnets)."""

    name = "?"
    dim = 0
    has_text = False
    preprocess = Preprocess()

    def _features(self, x):  # pragma: no cover - overridden
        raise NotImplementedError

    def embed_arrays(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            x = x.contiguous(memory_format=torch.channels_last)
            feats = self._features(x).float().numpy()
        return l2_normalize(feats)

    def embed(self, images) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = np.stack([self.preprocess(im.convert("RGB")) for im in images])
        return self.embed_arrays(batch)[0]


def set_threads() -> None:
    """Use every core for intra-op work unless the user said otherwise."""
    import os

    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
