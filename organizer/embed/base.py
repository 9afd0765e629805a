"""Shared plumbing for the backbones: an image tower and the runtime that executes it."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from organizer.embed import Preprocess, l2_normalize
from organizer.embed.runtime import (FallbackError, TorchRunner, bf16_runner, candidates, notice, onnx_runner,
                      requested_runtime)


class TowerEmbedder:
    """An image tower run by the fastest runtime that works here (see runtime.py).

    The runtime is chosen on the first `embed_arrays` call, so building an embedder only to
    read its head or embed text never exports anything, and a fresh export is verified on
    that first batch of real images."""

    name = "?"
    dim = 0
    has_text = False
    preprocess = Preprocess()
    family = "convnet"           # convnet | transformer: decides which runtimes are worth trying
    shareable = False            # weights with a stable identity: the export may go to the user cache

    @property
    def micro_batch(self) -> int | None:
        """Images per ONNX Runtime call. EfficientNet-like convnets are memory-bound: 1 to 4 images
        keep activations in cache (about 1.25x the images/s of 32 at once); matrix-heavy towers
        want whole batches."""
        return 2 if self.family == "convnet" else None

    def __init__(self, *, cache_dir: str | Path | None = None, runtime: str | None = None, quiet: bool = False):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.requested = requested_runtime(runtime)
        self.quiet = quiet
        self._runner = None
        self.threads: int | None = None  # inference threads; None: every core ($ORGANIZER_THREADS)
        self._lock = threading.Lock()  # the app may embed from several threads

    # -- what a backbone provides ----------------------------------------------------
    def _tower(self):  # pragma: no cover - overridden
        """torch module: (n, 3, H, W) float32 -> (n, dim) features before normalisation."""
        raise NotImplementedError

    def _export_module(self):
        """What goes to ONNX: the tower, or an equivalent that exports better (see efficientnet.py)."""
        return self._tower()

    def _fingerprint(self) -> str:  # pragma: no cover - overridden
        """Identity of the weights, part of the ONNX cache key."""
        raise NotImplementedError

    # -- running ---------------------------------------------------------------------
    def _reference(self, batch: np.ndarray) -> np.ndarray:
        return TorchRunner(self._tower())(batch)

    def _torch_runner(self) -> TorchRunner:
        set_threads(self.threads)
        return TorchRunner(self._tower(), channels_last=self.family == "convnet")

    def _build_runner(self, first: np.ndarray | None):
        size = self.preprocess.size
        order = candidates(self.family, self.requested, self.cache_dir)
        for choice in order:
            try:
                if choice == "torch":
                    return self._torch_runner()
                if choice == "torch-bf16":
                    set_threads(self.threads)
                    return bf16_runner(self._tower(), self._reference, first, size)
                return onnx_runner(cache_dir=self.cache_dir, backbone=self.name, fingerprint=self._fingerprint(),
                                   size=size, torch_module=self._export_module, reference=self._reference, first=first,
                                   int8=choice == "onnx-int8", threads=self.threads, micro_batch=self.micro_batch,
                                   share=self.shareable)
            except FallbackError as e:
                following = order[order.index(choice) + 1]
                notice(f"{self.name}: {choice} is not usable ({e}); running with "
                       f"{'PyTorch, which is slower' if following == 'torch' else following}", self.quiet)
        raise AssertionError("unreachable: torch always works")  # pragma: no cover

    def runner(self, first: np.ndarray | None = None):
        with self._lock:
            if self._runner is None:
                self._runner = self._build_runner(first)
            return self._runner

    def prepare(self) -> bool:
        """Build the runner now, when that needs no real images: a verified ONNX export is
        already cached (this store's or the user's). The indexer calls it on a thread while its
        decode processes start, so opening the session costs no wall time; when an export is
        still to be made, it is made and verified on the first real batch, as before."""
        from organizer.embed.runtime import cache_stem, read_verified, user_cache_dir

        if self._runner is not None:
            return True
        order = candidates(self.family, self.requested, self.cache_dir)
        if order[0] != "onnx" or self.cache_dir is None:
            return False
        name = cache_stem(self.name, self._fingerprint(), "fp32") + ".onnx"
        user = user_cache_dir() if self.shareable else None
        places = [self.cache_dir / "onnx" / name] + ([user / name] if user is not None else [])
        if not any(p.exists() and read_verified(p) is not None for p in places):
            return False
        self.runner(None)
        return True

    def verified_onnx(self) -> Path | None:
        """The verified fp32 export in this store's cache that `runner()` would open now (ONNX
        first in line, an export already made), found without opening a session: for a process
        that only ships the file to where it runs (engine_ray's driver; importing ONNX Runtime and
        opening the session cost it 0.35 s of CPU a command). None: build the runner instead."""
        from organizer.embed.runtime import fp32_export_path, read_verified

        if self._runner is not None or self.cache_dir is None:
            return None
        if candidates(self.family, self.requested, self.cache_dir)[0] != "onnx":
            return None
        path = fp32_export_path(self.cache_dir, self.name, self._fingerprint())
        if path.with_suffix(".failed").exists() or read_verified(path) is None:
            return None
        return path

    def use_threads(self, n: int | None) -> None:
        """Inference threads from now on (the indexer leaves cores to its decode processes).
        An ONNX session is reopened with the new count; PyTorch's setting is process-wide."""
        with self._lock:
            if n == self.threads:
                return
            self.threads = n
            runner = self._runner
            if runner is None:
                return
            if hasattr(runner, "session"):
                self._runner = type(runner)(runner.path, n, runner.label, runner.micro_batch)
            else:
                set_threads(n, force=True)

    @property
    def runtime(self) -> str:
        return self._runner.label if self._runner is not None else "not started"

    def features(self, batch: np.ndarray) -> np.ndarray:
        """(n, 3, H, W) float32 -> raw features (float32), before L2 normalisation."""
        return self.runner(batch)(batch)

    def embed_arrays(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return l2_normalize(self.features(batch))

    def embed(self, images) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        crops = np.stack([self.preprocess.crop(im.convert("RGB")) for im in images])
        return self.embed_arrays(self.preprocess.normalize(crops))[0]


TorchEmbedder = TowerEmbedder  # the name this class had before runtimes existed


def set_threads(n: int | None = None, *, force: bool = False) -> None:
    """PyTorch intra-op threads: `n`, else $ORGANIZER_THREADS, else every core; an explicit
    OMP_NUM_THREADS wins unless the caller insists (`force`)."""
    import os

    import torch

    from organizer.embed.runtime import inference_threads

    if force or n is not None or "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(n or inference_threads())
