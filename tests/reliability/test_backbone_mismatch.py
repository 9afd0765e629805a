"""18. Vectors of two backbones are never mixed; a classifier refuses another backbone's vectors."""
from __future__ import annotations


import pytest

from support import run_cli
from organizer.learn.model import TrainError, load_model
from organizer.library import Library


def test_model_from_another_backbone_is_refused(store_copy, tmp_path):
    run_cli("name", "0", "first", "--store", store_copy)
    run_cli("name", "1", "second", "--store", store_copy)
    run_cli("train", "--store", store_copy)
    lib = Library(store_copy)
    lib.store.set_meta("backbone", "clip:ViT-B-32:laion2b_s34b_b79k")  # as if the store held CLIP vectors
    with pytest.raises(TrainError, match="trained on efficientnet-lite0"):
        load_model(lib.store)
    lib.close()


def test_explicit_other_backbone_is_refused(store_copy, tmp_path):
    from support import SAMPLE

    before = (store_copy / "organizer.db").stat().st_size
    proc = run_cli("index", SAMPLE, "--store", store_copy, "--backbone", "clip", check=False)
    assert proc.returncode != 0 and "never mixed" in proc.stderr
    lib = Library(store_copy)
    assert lib.store.backbone == "efficientnet-lite0" and lib.store.counts()["images"] == 160
    lib.close()
    assert (store_copy / "organizer.db").exists() and before > 0
