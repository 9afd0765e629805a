"""`organizer export-model`: the current classifier as one ONNX file plus model.json.

The graph is the whole chain `organizer predict` runs: backbone features, L2 normalisation,
the linear head (PCA, weights and the calibration temperature are already folded into one
matrix, see classify.py), then softmax. So it returns calibrated probabilities and needs
nothing from organizer to run: onnxruntime and Pillow are enough (README: "A portable model").

Images must reach the network exactly as indexing brought them, or the answers drift: the
steps are written out in model.json (`resize`) and `load_pixels` is their reference."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from organizer.store import StoreError, atomic_write

FORMAT = "organizer-portable-v1"
MAX_PROBA_ERROR = 1e-4   # ONNX against the numpy pipeline on the same pixels
DECODE_MIN_SIDE = 256    # indexing decodes for the 224 crop and the 256 thumbnail alike (ingest/read.py)


def resize_spec(size: int) -> dict:
    return {
        "decode_min_side": DECODE_MIN_SIDE,
        "steps": [
            f"JPEG: Pillow draft('RGB', ({DECODE_MIN_SIDE}, {DECODE_MIN_SIDE})): decode at the smallest 1/2, "
            f"1/4 or 1/8 scale that keeps both sides >= {DECODE_MIN_SIDE}",
            "convert to RGB; transparent pixels are composited over white",
            f"if short side // {DECODE_MIN_SIDE} >= 2: Image.reduce(short side // {DECODE_MIN_SIDE}) (box filter)",
            "apply the EXIF orientation",
            f"resize so the short side is {size} (bicubic, reducing_gap=3.0; the long side rounded)",
            f"centre crop {size}x{size}: left = (width - {size}) // 2, top = (height - {size}) // 2",
            "to float32 in 0..1 (divide by 255), subtract mean, divide by std, HWC -> CHW",
        ],
    }


def load_pixels(path, size: int = 224, mean=None, std=None) -> np.ndarray:
    """(3, size, size) float32 for one image file, exactly as indexing prepares it."""
    from organizer.ingest.decode import decode_image
    from organizer.embed import Preprocess

    pre = Preprocess(size) if mean is None else Preprocess(size, tuple(mean), tuple(std))
    data = Path(path).read_bytes()
    return pre(decode_image(data, name=str(path), min_side=max(size, DECODE_MIN_SIDE)).image)


def _portable_module(tower, coef: np.ndarray, intercept: np.ndarray):
    import torch

    class Portable(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tower = tower
            self.register_buffer("coef", torch.from_numpy(np.ascontiguousarray(coef.T)))
            self.register_buffer("intercept", torch.from_numpy(intercept.copy()))

        def forward(self, x):
            f = self.tower(x)
            f = f / torch.clamp(torch.linalg.vector_norm(f, dim=1, keepdim=True), min=1e-12)
            logits = f @ self.coef + self.intercept
            if self.coef.shape[1] == 1:  # a binary head with one row: sigmoid, as LinearModel does
                p1 = torch.sigmoid(logits)
                return torch.cat([1 - p1, p1], dim=1)
            return torch.softmax(logits, dim=1)

    return Portable().eval()


def export_model(store, out, *, model_id: int | None = None) -> dict:
    """Write model.onnx and model.json to `out`; returns what model.json says plus the check."""
    import torch

    from organizer.learn.model import load_model
    from organizer.embed import get_embedder
    from organizer.embed.runtime import OPSET, OnnxRunner, probe_batch

    model = load_model(store, model_id)
    row = store.db.execute("SELECT id, metrics FROM models WHERE id=?", (model_id,)).fetchone() if model_id \
        else store.current_model()
    embedder = get_embedder(store.backbone, store_backbone=store.backbone, quiet=True)
    size = embedder.preprocess.size
    out = Path(out).expanduser().resolve()
    root = store.library_root
    if root is not None and (out == root or root in out.parents):
        raise StoreError(f"{out} is inside the image folder {root}; organizer never writes there")
    out.mkdir(parents=True, exist_ok=True)
    module = _portable_module(embedder._export_module(), model.coef, model.intercept)
    onnx_path, tmp = out / "model.onnx", out / "model.onnx.tmp"
    example = torch.from_numpy(probe_batch(size))
    import warnings

    with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, input_names=["pixels"],
                          output_names=["probabilities"], opset_version=OPSET, do_constant_folding=True,
                          dynamic_axes={"pixels": {0: "n"}, "probabilities": {0: "n"}})
    # the check: the file against organizer's own chain (PyTorch tower, numpy head) on real and probe images
    batch = probe_batch(size, n=3)
    paths = list(store.primary_paths().values())[:4]
    if root is not None:
        real = [load_pixels(root / p, size, embedder.preprocess.mean, embedder.preprocess.std) for p in paths
                if (root / p).is_file()]
        if real:
            batch = np.concatenate([np.stack(real), batch])
    got = OnnxRunner(tmp, label="check")(batch)
    with torch.inference_mode():
        feats = embedder._tower()(torch.from_numpy(batch)).numpy()
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    want = model.predict_proba(feats)
    error = float(np.abs(got - want).max())
    if not error <= MAX_PROBA_ERROR:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"the exported model disagrees with organizer's own (probabilities differ by {error:.2g}); "
                         "nothing was written")
    tmp.replace(onnx_path)
    metrics = json.loads(row["metrics"]) if row is not None else {}
    meta = {
        "format": FORMAT, "model_id": int(row["id"]), "backbone": store.backbone, "created_at": time.time(),
        "file": "model.onnx", "input": "pixels", "output": "probabilities",
        "labels": model.classes, "input_size": [size, size], "layout": "NCHW", "color": "RGB",
        "mean": [float(v) for v in embedder.preprocess.mean], "std": [float(v) for v in embedder.preprocess.std],
        "pixel_scale": "0-1: divide 8-bit values by 255, then (x - mean) / std per channel",
        "resize": resize_spec(size),
        "thresholds": {c: model.threshold_for(c) for c in model.classes},
        "unknown_label": "unknown",
        "unknown_rule": "below its label's threshold, the top answer is reported as 'unknown'",
        "metrics": {k: metrics[k] for k in ("accuracy", "macro_f1", "n_train") if k in metrics},
        "verified": {"images": int(len(batch)), "max_probability_error": error},
    }
    atomic_write(out / "model.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return meta
