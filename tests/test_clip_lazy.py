"""A CLIP store whose cache knows the model (issue 17): later commands index on the cached ONNX
export without importing PyTorch or building the model, and still get the same vectors; text,
heatmaps or a missing export build it on demand."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import ROOT, SAMPLE, random_clip_checkpoint

MODEL = "ViT-S-32-alt"  # as tests/test_clip.py: small enough to build quickly


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return random_clip_checkpoint(tmp_path_factory.mktemp("clip-lazy"), MODEL)


def photos(n=4):
    return [Image.open(p).convert("RGB") for p in sorted(SAMPLE.glob("*/image_0001.jpg"))[:n]]


CHILD = """
import json, sys
import numpy as np
from PIL import Image
from organizer.embed.clip import ClipEmbedder
emb = ClipEmbedder(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3], quiet=True)
images = [Image.open(p).convert("RGB") for p in sys.argv[4:]]
v = emb.embed(images)
print(json.dumps({"torch": "torch" in sys.modules, "open_clip": "open_clip" in sys.modules, "built": emb._clip is not None,
                  "runtime": emb.runtime, "dim": emb.dim, "family": emb.family, "vectors": v.tolist()}))
"""


def child(checkpoint, cache) -> dict:
    files = [str(p) for p in sorted(SAMPLE.glob("*/image_0001.jpg"))[:4]]
    out = subprocess.run([sys.executable, "-c", CHILD, MODEL, str(checkpoint), str(cache), *files], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_known_model_runs_on_the_export_without_torch(checkpoint, tmp_path):
    from organizer.embed.clip import META_SUFFIX, ClipEmbedder

    cache = tmp_path / "cache"
    first = ClipEmbedder(MODEL, str(checkpoint), cache_dir=cache, quiet=True)  # builds, writes what it learnt
    assert first._clip is not None and list((cache / "onnx").glob("*" + META_SUFFIX))
    expected = first.embed(photos())  # exports and verifies the ONNX file
    assert first.runtime == "onnxruntime"

    again = child(checkpoint, cache)
    assert again["runtime"] == "onnxruntime" and not again["built"]
    assert not again["torch"] and not again["open_clip"], "nothing imported PyTorch"
    assert (again["dim"], again["family"]) == (first.dim, first.family)
    assert np.allclose(np.array(again["vectors"], np.float32), expected, atol=1e-5)

    # the control: the same export without the model's description builds the model (PyTorch imported)
    other = Path(shutil.copytree(cache, tmp_path / "other-cache"))
    for meta in (other / "onnx").glob("*" + META_SUFFIX):
        meta.unlink()
    built = child(checkpoint, other)
    assert built["built"] and built["torch"] and built["runtime"] == "onnxruntime"
    assert np.allclose(np.array(built["vectors"], np.float32), expected, atol=1e-5)
    assert list((other / "onnx").glob("*" + META_SUFFIX)), "and writes it for the next command"


def test_lazy_model_is_built_for_text_and_checked(checkpoint, tmp_path):
    from organizer.embed.clip import META_SUFFIX, ClipEmbedder
    from organizer.embed import BackboneError

    cache = tmp_path / "cache"
    first = ClipEmbedder(MODEL, str(checkpoint), cache_dir=cache, quiet=True)
    text = first.embed_text(["a photo of a watch"])
    lazy = ClipEmbedder(MODEL, str(checkpoint), cache_dir=cache, quiet=True)
    assert lazy._clip is None and lazy.preprocess == first.preprocess
    assert np.allclose(lazy.embed_text(["a photo of a watch"]), text, atol=1e-6)  # built on demand
    assert lazy._clip is not None
    # a cache file that disagrees with the weights is refused when the model is built
    meta = next((cache / "onnx").glob("*" + META_SUFFIX))
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "dim": 7}))
    wrong = ClipEmbedder(MODEL, str(checkpoint), cache_dir=cache, quiet=True)
    assert wrong.dim == 7 and wrong._clip is None
    with pytest.raises(BackboneError, match="delete it"):
        wrong.embed_text(["x"])
    # a damaged one is ignored: the model is built and the file written again
    meta.write_text("{not json")
    healed = ClipEmbedder(MODEL, str(checkpoint), cache_dir=cache, quiet=True)
    assert healed._clip is not None and json.loads(meta.read_text())["dim"] == first.dim
    shutil.rmtree(cache)
