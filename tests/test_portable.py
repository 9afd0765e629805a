"""`organizer export-model`: one ONNX graph that answers as `organizer predict` does, run by the README's
example (onnxruntime and Pillow alone)."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from interop_support import trained_store
from support import ROOT, SAMPLE, run_cli


@pytest.fixture(scope="module")
def exported(sample_store, tmp_path_factory):
    store = trained_store(sample_store, tmp_path_factory.mktemp("trained"))
    out = tmp_path_factory.mktemp("portable") / "model"
    printed = run_cli("export-model", "--store", store, "--out", out).stdout
    assert "largest probability difference" in printed
    return store, out


def library_predictions(store, tmp_path) -> dict:
    run_cli("export", "--store", store, "--format", "csv", "--out", tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv", newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def test_model_json_describes_the_graph(exported):
    import onnxruntime as ort

    store, out = exported
    meta = json.loads((out / "model.json").read_text())
    assert meta["labels"] == sorted(meta["labels"]) and len(meta["labels"]) == 8
    assert meta["input_size"] == [224, 224] and len(meta["mean"]) == len(meta["std"]) == 3
    assert set(meta["thresholds"]) == set(meta["labels"]) and meta["resize"]["steps"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape[1:]) == ("pixels", [3, 224, 224])
    p = session.run(None, {"pixels": np.zeros((3, 3, 224, 224), np.float32)})[0]
    assert p.shape == (3, 8) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)  # probabilities, one row per image


def test_readme_example_matches_organizer_predict(exported, tmp_path):
    """The README snippet, executed as written, against the library's stored predictions."""
    store, out = exported
    code = re.search(r"<!-- portable-example -->\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    assert len(code.group(1).strip().splitlines()) <= 30
    rows = library_predictions(store, tmp_path)
    paths = sorted(rows)
    proc = subprocess.run([sys.executable, str(script), str(out), *paths], cwd=SAMPLE, capture_output=True,
                          text=True, timeout=300, check=True)
    got = {line.split("\t")[0]: line.split("\t")[1:] for line in proc.stdout.splitlines()}
    assert set(got) == set(paths)
    same = sum(got[p][0] == rows[p]["predicted"] for p in paths) / len(paths)
    worst = max(abs(float(got[p][1]) - float(rows[p]["confidence"])) for p in paths)
    assert same >= 0.995, same
    assert worst <= 1e-3, worst


def test_every_probability_matches_and_preprocessing_matters(exported):
    """All classes' probabilities against the store's model on the stored vectors; a control with
    a plain squash to 224x224 shows the check can fail."""
    import onnxruntime as ort
    from PIL import Image

    from organizer.learn.model import load_model
    from organizer.embed import Preprocess
    from organizer.export.portable import load_pixels
    from organizer.store import Store
    from organizer.store.vectors import load_vectors

    store_dir, out = exported
    store = Store(store_dir, create=False)
    try:
        ids, X = load_vectors(store)
        want = load_model(store).predict_proba(X)
        paths = store.primary_paths(ids)
        root = store.library_root
    finally:
        store.close()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])

    def run(batch):
        return np.concatenate([session.run(None, {"pixels": batch[i:i + 16]})[0] for i in range(0, len(batch), 16)])

    got = run(np.stack([load_pixels(root / paths[i]) for i in ids]))
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.995
    assert np.abs(got - want).max() <= 1e-3, np.abs(got - want).max()
    pre = Preprocess(224)
    few = list(range(0, len(ids), 4))  # the control needs no full pass
    squashed = run(np.stack([pre.normalize(np.asarray(Image.open(root / paths[ids[i]]).convert("RGB").resize(
        (224, 224), Image.BICUBIC))[None])[0] for i in few]))
    assert np.abs(squashed - want[few]).max() > 1e-3  # the control: other pixels, other answers
