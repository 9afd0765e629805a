"""open_clip CLIP models: any architecture open_clip knows, with hub weights or a local file."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from organizer.embed import BackboneError, Preprocess, l2_normalize
from organizer.embed.base import TowerEmbedder, set_threads
from organizer.embed.runtime import file_fingerprint

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"


def canonical_name(model: str, pretrained: str) -> str:
    if os.path.sep in pretrained or pretrained.endswith((".safetensors", ".bin", ".pt", ".pth")):
        pretrained = str(Path(pretrained).expanduser().resolve())
    return f"clip:{model}:{pretrained}"


def hub_weights_available(model: str, pretrained: str, timeout: float = 5.0) -> bool:
    """True when the weights are in the local cache, or (not offline) the hub answers quickly."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    repo = (cfg or {}).get("hf_hub", "").strip("/")
    if not repo:
        return False
    from huggingface_hub import try_to_load_from_cache

    for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, filename)
        if isinstance(hit, str) and os.path.exists(hit):
            return True
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(repo, timeout=timeout)
        return True
    except Exception:
        return False


META_SUFFIX = ".clip.json"  # beside the ONNX export: what indexing needs to know of the model without building it


class ClipEmbedder(TowerEmbedder):
    """An open_clip model. Importing torch and open_clip and building the model costs seconds of CPU
    (4-5 s for ViT-B-32 on 2 cores), a fixed cost on every command. So the model is built on first
    use only (an export to make, PyTorch to run, text to embed, a heatmap) when the store's cache
    already knows its input size, normalisation, dimension and family for these very weights
    (`<cache>/onnx/<export name>.clip.json`, written at the first build): with a verified export,
    indexing then runs on ONNX Runtime alone."""

    has_text = True

    def __init__(self, model: str = DEFAULT_MODEL, pretrained: str = DEFAULT_PRETRAINED, **runtime_options):
        super().__init__(**runtime_options)
        is_file = os.path.exists(os.path.expanduser(pretrained))
        self._arch, self._pretrained, self._is_file = model, pretrained, is_file
        self._weights = os.path.expanduser(pretrained) if is_file else None
        # A hub tag names the same weights everywhere; a local file is known only by its path.
        self.shareable = not is_file
        self._tag = pretrained
        self.name = canonical_name(model, pretrained)
        self._clip = None
        self._tokenizer = None
        self._build_lock = threading.Lock()
        meta = self._read_meta()
        if meta is None:
            self._build()
        else:
            self.family, self.dim = meta["family"], meta["dim"]
            self.preprocess = Preprocess(meta["size"], meta["mean"], meta["std"])

    # -- the model, built once, when something needs it ---------------------------------
    def _meta(self) -> dict:
        p = self.preprocess
        return {"family": self.family, "dim": int(self.dim), "size": int(p.size), "mean": list(p.mean),
                "std": list(p.std)}

    def _meta_path(self) -> Path | None:
        from organizer.embed.runtime import cache_stem

        if self.cache_dir is None:
            return None
        return self.cache_dir / "onnx" / (cache_stem(self.name, self._fingerprint(), "fp32") + META_SUFFIX)

    def _read_meta(self) -> dict | None:
        import json

        path = self._meta_path()
        try:
            raw = json.loads(path.read_text()) if path is not None else None
            return {"family": str(raw["family"]), "dim": int(raw["dim"]), "size": int(raw["size"]),
                    "mean": tuple(float(v) for v in raw["mean"]), "std": tuple(float(v) for v in raw["std"])}
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or damaged: build the model and write it again

    def _build(self):
        import open_clip

        with self._build_lock:
            if self._clip is not None:
                return self._clip
            set_threads(self.threads)  # the indexer may have asked for fewer threads before the build
            model, pretrained = self._arch, self._pretrained
            if not self._is_file and pretrained not in open_clip.list_pretrained_tags_by_model(model):
                raise BackboneError(f"unknown CLIP weights {pretrained!r} for {model}: give a tag from "
                                    f"open_clip.list_pretrained_tags_by_model({model!r}) or a local checkpoint file")
            try:
                clip, _, _ = open_clip.create_model_and_transforms(model, pretrained=self._weights or pretrained)
            except RuntimeError as e:
                raise BackboneError(f"cannot load CLIP {model} weights from {pretrained}: {e}") from e
            clip = clip.eval()
            size = clip.visual.image_size
            size = size[0] if isinstance(size, (tuple, list)) else int(size)
            mean = getattr(clip.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
            std = getattr(clip.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
            preprocess = Preprocess(size, tuple(float(v) for v in mean), tuple(float(v) for v in std))
            # ViTs spend their time in matrix products (bf16/AMX pays); ResNet/ConvNeXt towers do not.
            family = "transformer" if "Transformer" in type(clip.visual).__name__ else "convnet"
            if getattr(clip, "text_projection", None) is not None:
                dim = int(clip.text_projection.shape[1])
            else:  # the tower itself, not a runner: runner() takes a lock a caller may hold
                from organizer.embed.runtime import TorchRunner

                probe = np.stack([preprocess.crop(im) for im in _probe_images(size)])
                dim = int(TorchRunner(clip.visual)(preprocess.normalize(probe)).shape[1])
            known = self._read_meta()
            if known is not None and known != {"family": family, "dim": dim, "size": preprocess.size,
                                               "mean": preprocess.mean, "std": preprocess.std}:
                raise BackboneError(f"{self.name}: the model does not match {self._meta_path()} "
                                    "(a cache file); delete it and run the command again")
            self.preprocess, self.family, self.dim, self._clip = preprocess, family, dim, clip
            if known is None:
                self._write_meta()
            return clip

    def _write_meta(self) -> None:
        import json

        from organizer.store import atomic_write

        path = self._meta_path()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: f.write(json.dumps(self._meta()).encode()))
        except OSError:
            pass  # a read-only cache only means the next start builds the model again

    @property
    def model(self):
        return self._clip if self._clip is not None else self._build()

    @property
    def visual(self):
        return self.model.visual

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer(self._arch)
        return self._tokenizer

    def _tower(self):
        return self.visual  # encode_image(normalize=False) is exactly the visual tower

    def _fingerprint(self) -> str:
        return file_fingerprint(self._weights) if self._weights else f"tag:{self._tag}"

    def embed_text(self, texts: list[str]) -> np.ndarray:
        import torch

        model = self.model
        with torch.inference_mode():
            feats = model.encode_text(self.tokenizer(texts)).float().numpy()
        return l2_normalize(feats)[0]


def _probe_images(size: int):
    from PIL import Image

    return [Image.new("RGB", (size, size), (127, 127, 127))]
