"""13. Model and cache files load without pickle; a planted pickle is rejected and never runs."""
from __future__ import annotations

import pickle

import pytest

from support import run_cli
from organizer.learn.model import TrainError, load_model
from organizer.library import Library


class Payload:
    """Unpickling this creates the sentinel file: proof that code ran."""

    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def trained(store):
    run_cli("name", "0", "first", "--store", store)
    run_cli("name", "1", "second", "--store", store)
    run_cli("train", "--store", store)


@pytest.mark.parametrize("target", ["npz", "json"])
def test_planted_pickle_is_rejected(store_copy, tmp_path, target):
    trained(store_copy)
    lib = Library(store_copy)
    stem = lib.store.models_dir / lib.store.current_model()["path"]
    sentinel = tmp_path / "pwned"
    (stem.with_suffix("." + target)).write_bytes(pickle.dumps(Payload(str(sentinel))))
    with pytest.raises(TrainError):
        load_model(lib.store)
    proc = run_cli("predict", "--store", store_copy, check=False)
    assert proc.returncode != 0 and "run `organizer train` again" in proc.stderr
    assert not sentinel.exists()
    lib.close()


def test_faiss_cache_is_not_unpickled(store_copy, tmp_path):
    sentinel = tmp_path / "pwned"
    (store_copy / "index.faiss").write_bytes(pickle.dumps(Payload(str(sentinel))))
    out = run_cli("similar", "watch/image_0001.jpg", "--store", store_copy, "-k", "3").stdout
    assert len(out.strip().splitlines()) == 3
    assert not sentinel.exists()


def test_no_pickle_loading_in_the_code():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    offenders = []
    for path in list((root / "organizer").rglob("*.py")):
        text = path.read_text()
        if re.search(r"pickle\.loads?\(|joblib\.load\(|allow_pickle\s*=\s*True", text):
            offenders.append(str(path))
        for match in re.finditer(r"torch\.load\(", text):
            call = _call_text(text, match.end())
            if "weights_only=True" not in call:
                offenders.append(f"{path}: torch.load({call})")
    assert not offenders, offenders


def _call_text(text: str, start: int) -> str:
    """The argument text of a call, up to its matching parenthesis."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]
