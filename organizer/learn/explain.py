"""Explain a prediction: where in the image the evidence for a label sits.

Grad-CAM through the very function that makes the prediction: the backbone's PyTorch tower
(even where indexing runs it on ONNX Runtime, whose graph has no gradients), the same L2
normalisation and the trained head (`softmax(u @ coef.T + intercept)`, temperature folded in).
The gradient of the label's log-probability is taken at a late feature map:

* EfficientNet-Lite0: the last convolutional stage (`bn2`, 1280 x 7 x 7 before pooling);
* open_clip ViTs: the patch tokens of a late block, reshaped to the patch grid. open_clip puts
  the class token first ([cls, patch_1 .. patch_n], row-major patches; checked against the
  installed open_clip 3.x). With class-token pooling the last block's patch tokens never reach
  the output, so the block before it is used; with average pooling the last one.

The score is the log-probability rather than the raw logit: a logit map also lights up what
raises every class's logit (the object being an object), log p(label) asks what makes
this label win over the others. Measured on sample_data (48 images, the deletion test of
explain_check.py with a mean fill): blanking the top of the predicted label's map hurt it more
than blanking the top of a wrong label's map on 81% of images with log p, 67% with the logit.

Where no gradient path is known (other CLIP towers) an occlusion map is the fallback: grey out
each cell of a grid and measure how much the label's probability falls, through whatever
runtime embeds the library.

The network sees only the centre square (Preprocess.crop); the map is 0 outside it. Maps are
cached per image, label and model under <store>/explain/<model id>-<digest of its weights>/,
so a retrained model never shows an older model's map.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from organizer.store import StoreError, atomic_write

CACHE_DIR = "explain"
OCCLUSION_GRID = 7
_LOCK = threading.Lock()  # hooks live on shared modules: one explanation at a time


class ExplainError(StoreError):
    pass


@dataclass
class Explanation:
    heatmap: np.ndarray       # (height, width) float32 in [0, 1]: the image's EXIF-oriented size (or max_side)
    label: str                # the label explained
    confidence: float         # the model's probability of that label for this image
    predicted: str            # the model's best class (before the 'unknown' threshold)
    model_id: int
    method: str               # gradcam | occlusion
    image_id: str | None      # None for a file outside the library
    source: str               # the file that was read
    cached: bool = False


# -- the network ---------------------------------------------------------------------------
def target_layer(embedder):
    """(module, kind) whose output Grad-CAM weighs, or (None, None) when only occlusion works."""
    from organizer.embed.clip import ClipEmbedder
    from organizer.embed.efficientnet import EfficientNetLite0

    if isinstance(embedder, EfficientNetLite0):
        return embedder.model.bn2, "cnn"
    if isinstance(embedder, ClipEmbedder):
        v = embedder.visual
        blocks = getattr(getattr(v, "transformer", None), "resblocks", None)
        pool = getattr(v, "pool_type", None)
        if (blocks is not None and len(blocks) >= 2 and getattr(v, "attn_pool", None) is None
                and hasattr(v, "class_embedding") and pool in ("tok", "avg")):
            return blocks[-2] if pool == "tok" else blocks[-1], "vit"
    return None, None


class Explainer:
    """Maps and probabilities for centre crops ((n, S, S, 3) uint8, as Preprocess.crop makes them)."""

    def __init__(self, embedder, model, method: str = "auto"):
        if method not in ("auto", "gradcam", "occlusion"):
            raise ExplainError(f"unknown method {method!r}: use auto, gradcam or occlusion")
        self.embedder, self.model = embedder, model
        self.layer, self.kind = (None, None) if method == "occlusion" else target_layer(embedder)
        if method == "gradcam" and self.layer is None:
            raise ExplainError(f"no gradient path for {embedder.name}: use --method occlusion")
        self.method = "gradcam" if self.layer is not None else "occlusion"

    # the head, as torch: softmax(normalize(f) @ coef.T + intercept), binary one-row models included
    def _log_proba(self, feats):
        import torch

        coef, bias = torch.from_numpy(self.model.coef), torch.from_numpy(self.model.intercept)
        u = feats.float() / feats.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
        logits = u @ coef.T + bias
        if logits.shape[1] == 1 and len(self.model.classes) == 2:  # sigmoid == softmax([0, z])
            logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
        return torch.log_softmax(logits, dim=1)

    def _input(self, crops):
        import torch

        return torch.from_numpy(self.embedder.preprocess.normalize(np.asarray(crops, np.uint8)))

    def proba(self, crops: np.ndarray, batch: int = 16) -> np.ndarray:
        """Probabilities from the PyTorch tower: what the maps are computed against."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), batch):
                out.append(self._log_proba(self.embedder._tower()(self._input(crops[i:i + batch]))).exp().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.model.classes)), np.float32)

    def maps(self, crops: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """labels (n, m) class indices -> (maps (n, m, gh, gw) float32 in [0, 1], proba (n, k))."""
        labels = np.asarray(labels).reshape(len(crops), -1)
        if self.method == "occlusion":
            return self._occlusion(crops, labels)
        with _LOCK:
            return self._gradcam(crops, labels)

    def _gradcam(self, crops, labels):
        import torch

        seen = {}

        def keep(_module, _inputs, output):
            if torch.is_grad_enabled():  # another thread's inference passes through untouched
                seen["a"] = output

        hook = self.layer.register_forward_hook(keep)
        try:
            with torch.inference_mode(False), torch.enable_grad():
                x = self._input(crops).requires_grad_(True)  # a graph even if weights are frozen
                logp = self._log_proba(self.embedder._tower()(x))
                a = seen["a"]
                cams = []
                for j in range(labels.shape[1]):
                    # images are independent (eval mode), so one backward gives every image's gradient
                    score = logp.gather(1, torch.from_numpy(labels[:, j:j + 1].astype(np.int64))).sum()
                    (g,) = torch.autograd.grad(score, a, retain_graph=j + 1 < labels.shape[1])
                    cams.append(self._combine(a.detach(), g))
        finally:
            hook.remove()
        cams = np.stack(cams, axis=1)
        return _unit(cams), logp.detach().exp().numpy()

    def _combine(self, a, g) -> np.ndarray:
        """Grad-CAM: channels weighted by their mean gradient, summed, negative evidence dropped."""
        if self.kind == "cnn":
            cam = (a * g.mean(dim=(2, 3), keepdim=True)).sum(1)
        else:
            v = self.embedder.visual
            if not getattr(v.transformer, "batch_first", True):
                a, g = a.transpose(0, 1), g.transpose(0, 1)
            a, g = a[:, 1:], g[:, 1:]  # class token first, then the patches row by row
            gh, gw = v.grid_size
            cam = (a * g.mean(dim=1, keepdim=True)).sum(-1).reshape(len(a), gh, gw)
        return cam.clamp_min(0).float().numpy()

    def _occlusion(self, crops, labels, grid: int = OCCLUSION_GRID):
        from organizer.embed import l2_normalize

        size = crops.shape[1]
        edges = np.linspace(0, size, grid + 1).round().astype(int)
        maps, probas = [], []
        for crop, want in zip(crops, labels):
            variants = [crop]
            fill = crop.reshape(-1, 3).mean(0).astype(np.uint8)
            for r in range(grid):
                for c in range(grid):
                    v = crop.copy()
                    v[edges[r]:edges[r + 1], edges[c]:edges[c + 1]] = fill
                    variants.append(v)
            feats = self.embedder.features(self.embedder.preprocess.normalize(np.stack(variants)))
            p = self.model.predict_proba(l2_normalize(feats)[0])
            drop = np.maximum(p[:1, want] - p[1:, want], 0.0)  # (cells, m)
            maps.append(drop.T.reshape(len(want), grid, grid))
            probas.append(p[0])
        return _unit(np.stack(maps).astype(np.float32)), np.stack(probas)


def _unit(cams: np.ndarray) -> np.ndarray:
    top = cams.reshape(*cams.shape[:-2], -1).max(-1)[..., None, None]
    return np.where(top > 0, cams / np.where(top > 0, top, 1.0), 0.0).astype(np.float32)


# -- geometry and pictures -------------------------------------------------------------------------
def crop_box(width: int, height: int, size: int) -> tuple[float, float, float, float]:
    """The centre square Preprocess.crop keeps, as fractions (left, top, right, bottom) of the image."""
    scale = size / min(width, height)
    nw, nh = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    return left / nw, top / nh, (left + size) / nw, (top + size) / nh


def render(cam: np.ndarray, box, width: int, height: int, max_side: int | None = None) -> np.ndarray:
    """A grid map -> (height, width) float32 in [0, 1] (smaller when max_side is given), 0 outside the crop."""
    from PIL import Image

    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    l, t, r, b = (round(box[0] * width), round(box[1] * height), round(box[2] * width), round(box[3] * height))
    out = np.zeros((height, width), np.float32)
    if r > l and b > t:
        up = Image.fromarray(np.ascontiguousarray(cam, np.float32), mode="F").resize((r - l, b - t), Image.BILINEAR)
        out[t:b, l:r] = np.asarray(up, np.float32)
    return np.clip(out, 0.0, 1.0)


_COLORS = np.array([[0, 0, 160], [0, 170, 255], [255, 230, 0], [230, 0, 0]], np.float32)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB uint8 (blue, cyan, yellow, red)."""
    pos = np.clip(heatmap, 0, 1) * (len(_COLORS) - 1)
    lo = np.minimum(pos.astype(int), len(_COLORS) - 2)
    frac = (pos - lo)[..., None]
    return (_COLORS[lo] * (1 - frac) + _COLORS[lo + 1] * frac).astype(np.uint8)


def overlay(image, heatmap: np.ndarray, strength: float = 0.6):
    """The image with the map over it: opaque where the heat is, the photo itself where there is none."""
    from PIL import Image

    image = image.convert("RGB")
    if image.size != (heatmap.shape[1], heatmap.shape[0]):
        image = image.resize((heatmap.shape[1], heatmap.shape[0]), Image.BICUBIC)
    alpha = (strength * np.clip(heatmap, 0, 1))[..., None]
    mixed = np.asarray(image, np.float32) * (1 - alpha) + colorize(heatmap).astype(np.float32) * alpha
    return Image.fromarray(mixed.round().astype(np.uint8))


def overlay_bytes(image, heatmap: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    overlay(image, heatmap).save(buf, fmt)
    return buf.getvalue()


# -- cache -------------------------------------------------------------------------------------
def model_key(store, row) -> str:
    """`<id>-<digest of the weights file>`: ids are never the only thing that tells models apart."""
    path = store.models_dir / f"{row['path']}.npz"
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError as e:
        raise ExplainError(f"model file {path} cannot be read ({e}): run `organizer train` again") from e
    return f"{row['id']}-{digest}"


def _cache_file(store, key: str, image_id: str, label: int, method: str) -> Path:
    return store.root / CACHE_DIR / key / f"{image_id}.{label}.{method}.npz"


def _load_cached(path: Path):
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["cam"].astype(np.float32), z["proba"].astype(np.float32), tuple(z["box"].tolist())
    except (OSError, ValueError, KeyError):
        return None


def _save_cached(path: Path, cam, proba, box) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, cam=cam, proba=proba, box=np.asarray(box, np.float64)))
    except OSError:
        pass  # a cache that cannot be written is only slower


# -- the facade's entry point ---------------------------------------------------------------------
def explain(lib, target: str, label: str | None = None, *, max_side: int | None = None,
            method: str = "auto", use_cache: bool = True) -> Explanation:
    """Explain the current model's prediction for a library image (path or id) or any image file."""
    from organizer.learn.model import load_model
    from organizer.ingest.decode import DecodeError, decode_image
    from organizer.store import content_hash

    store = lib.store
    model = load_model(store)  # says "run `organizer train` first" when there is none
    row = store.current_model()
    if label is not None and label not in model.classes:
        raise ExplainError(f"the current model has no label {label!r}; its labels: {', '.join(model.classes)}")
    image_id = lib._find_image(target)
    if image_id:
        path = lib.image_path(image_id)
        if path is None or not path.is_file():
            raise ExplainError(f"the file of image {image_id} is missing: run `organizer index` again")
    elif os.path.isfile(target):
        path = Path(target)
    else:
        raise ExplainError(f"{target} is neither a path in the library, an image id, nor a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ExplainError(f"cannot read {path}: {e.strerror or e}") from None
    if image_id and content_hash(data) != image_id:
        image_id = None  # changed since indexing: explain what is there now, cache nothing
    embedder = lib.embedder()
    size = embedder.preprocess.size
    explainer = Explainer(embedder, model, method)
    try:
        decoded = decode_image(data, name=str(path), min_side=max(size, 256))
    except DecodeError as e:
        raise ExplainError(str(e)) from None
    key = model_key(store, row) if image_id and use_cache else None
    want = model.classes.index(label) if label is not None else None
    hit = None
    crop = embedder.preprocess.crop(decoded.image)[None]
    if want is None:
        # the predicted label: from the stored vector for a library image (what `predict` and the
        # app show), else from one forward pass
        if image_id:
            from organizer.store.vectors import load_vectors

            want = int(model.predict_proba(load_vectors(store, [image_id])[1])[0].argmax())
        else:
            want = int(explainer.proba(crop)[0].argmax())
    if key:
        hit = _load_cached(_cache_file(store, key, image_id, want, explainer.method))
    cached = hit is not None
    if hit is None:
        cams, proba = explainer.maps(crop, np.array([[want]]))
        hit = cams[0, 0], proba[0], crop_box(*decoded.image.size, size)
        if key:
            _save_cached(_cache_file(store, key, image_id, want, explainer.method), *hit)
    cam, proba, box = hit
    heat = render(cam, box, decoded.width, decoded.height, max_side)
    return Explanation(heat, model.classes[want], float(proba[want]), model.classes[int(proba.argmax())],
                       int(row["id"]), explainer.method, image_id, str(path), cached)
