"""open_clip CLIP models: any architecture open_clip knows, with hub weights or a local file."""
from __future__ import annotations

import os
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


class ClipEmbedder(TowerEmbedder):
    has_text = True

    def __init__(self, model: str = DEFAULT_MODEL, pretrained: str = DEFAULT_PRETRAINED, **runtime_options):
        import open_clip

        super().__init__(**runtime_options)
        set_threads()
        is_file = os.path.exists(os.path.expanduser(pretrained))
        if not is_file and pretrained not in open_clip.list_pretrained_tags_by_model(model):
            raise BackboneError(f"unknown CLIP weights {pretrained!r} for {model}: give a tag from "
                                f"open_clip.list_pretrained_tags_by_model({model!r}) or a local checkpoint file")
        try:
            clip, _, transform = open_clip.create_model_and_transforms(
                model, pretrained=os.path.expanduser(pretrained) if is_file else pretrained)
        except RuntimeError as e:
            raise BackboneError(f"cannot load CLIP {model} weights from {pretrained}: {e}") from e
        self.model = clip.eval()
        self.visual = clip.visual
        # ViTs spend their time in matrix products (bf16/AMX pays); ResNet/ConvNeXt towers do not.
        self.family = "transformer" if "Transformer" in type(clip.visual).__name__ else "convnet"
        self._weights = os.path.expanduser(pretrained) if is_file else None
        # A hub tag names the same weights everywhere; a local file is known only by its path.
        self.shareable = not is_file
        self._tag = pretrained
        self.tokenizer = open_clip.get_tokenizer(model)
        self.name = canonical_name(model, pretrained)
        size = clip.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else int(size)
        mean = getattr(clip.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
        std = getattr(clip.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
        self.preprocess = Preprocess(size, tuple(mean), tuple(std))
        self.dim = int(clip.text_projection.shape[1]) if getattr(clip, "text_projection", None) is not None \
            else int(self.embed(_probe_images(size)).shape[1])

    def _tower(self):
        return self.visual  # encode_image(normalize=False) is exactly the visual tower

    def _fingerprint(self) -> str:
        return file_fingerprint(self._weights) if self._weights else f"tag:{self._tag}"

    def embed_text(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            feats = self.model.encode_text(self.tokenizer(texts)).float().numpy()
        return l2_normalize(feats)[0]


def _probe_images(size: int):
    from PIL import Image

    return [Image.new("RGB", (size, size), (127, 127, 127))]
