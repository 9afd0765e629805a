"""Explain (Grad-CAM heatmaps) on real stores and real networks: the map's shape and range, the
files it writes (never into the library), its errors, its cache across model versions, a
deletion test with controls on sample_data, and the CLIP ViT path on a random local checkpoint."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from support import SAMPLE, random_clip_checkpoint, run_cli, truth


HELD_OUT = {f"{k:04d}.jpg" for k in (5, 6, 7, 8)}


@pytest.fixture(scope="module")
def trained(sample_store, tmp_path_factory):
    """sample_data labeled by folder (as a person would), but for a few held-out images, and trained."""
    from organizer.library import Library

    store = tmp_path_factory.mktemp("explain") / "store"
    shutil.copytree(sample_store, store)
    lib = Library(store)
    by_class: dict[str, list[str]] = {}
    for image_id, path in lib.store.primary_paths().items():
        by_class.setdefault(truth(path), []).append(image_id)
    paths = lib.store.primary_paths()
    for name, ids in by_class.items():  # images 5-8 of each class stay unlabeled: the deletion test's
        lib.label_ids([i for i in ids if paths[i].split("_")[-1] not in HELD_OUT], name)
    lib.train()
    lib.close()
    return store


def listing(folder):
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*"))


def test_map_and_overlay_through_the_cli(trained, tmp_path):
    before = listing(SAMPLE)
    rel = "sunflower/image_0001.jpg"
    out, out_map = tmp_path / "o" / "overlay.png", tmp_path / "o" / "map.npy"
    info = json.loads(run_cli("explain", rel, "--store", trained, "--out", out, "--out-map", out_map,
                              "--json").stdout)
    width, height = Image.open(SAMPLE / rel).size
    heat = np.load(out_map, allow_pickle=False)
    assert heat.dtype == np.float32 and heat.shape == (height, width)
    assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0.5
    assert info["label"] == info["predicted"] == "sunflower" and 0.5 < info["confidence"] <= 1.0
    assert info["method"] == "gradcam" and info["model_id"] >= 1
    # the network saw the centre square only: outside it the map is 0
    side = min(width, height)
    if width > height:
        left = (width - side) // 2
        assert heat[:, : left - 1].max() == 0.0 and heat[:, left + side + 1:].max() == 0.0
    assert Image.open(out).size == (width, height)

    inside = run_cli("explain", rel, "--store", trained, "--out", SAMPLE / "sunflower" / "x.png", check=False)
    assert inside.returncode != 0 and "inside the image folder" in inside.stderr
    assert listing(SAMPLE) == before, "nothing was written into the library folder"


def test_file_outside_the_library_is_explained_on_the_fly_at_its_oriented_size(trained, tmp_path):
    # a photo stored sideways with EXIF orientation 6 (rotate 90° clockwise to view)
    src = Image.open(SAMPLE / "airplanes" / "image_0002.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    src.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes())
    from organizer.library import Library

    e = Library(trained).explain(str(path))
    assert e.image_id is None and e.predicted == "airplanes" and e.label == "airplanes"
    assert e.heatmap.shape == (src.height, src.width)  # oriented: as the photo is viewed
    assert e.heatmap.dtype == np.float32 and 0.0 <= e.heatmap.min() and e.heatmap.max() <= 1.0


def test_errors_are_one_line(trained, sample_store, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes((SAMPLE / "watch" / "image_0001.jpg").read_bytes()[:600])
    proc = run_cli("explain", bad, "--store", trained, check=False)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "broken.jpg" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run_cli("explain", "watch/image_0001.jpg", "--store", sample_store, check=False)
    assert proc.returncode != 0 and "organizer train" in proc.stderr and proc.stderr.count("\n") == 1

    from organizer.learn.explain import ExplainError
    from organizer.library import Library

    with pytest.raises(ExplainError, match="no label 'cats'"):
        Library(trained).explain("watch/image_0001.jpg", "cats")


def test_cache_follows_the_model(trained, tmp_path):
    from organizer.library import Library

    store = tmp_path / "store"
    shutil.copytree(trained, store)
    lib = Library(store)
    image_id = lib.resolve_paths(["bonsai/image_0003.jpg"])[0]
    first = lib.explain(image_id)
    again = lib.explain(image_id)
    assert not first.cached and again.cached and np.array_equal(first.heatmap, again.heatmap)
    # the prediction and the map come from one function: the stored vector's probability agrees
    from organizer.learn.model import load_model
    from organizer.store.vectors import load_vectors

    stored = load_model(lib.store).predict_proba(load_vectors(lib.store, [image_id])[1])[0]
    assert abs(stored.max() - first.confidence) < 1e-2
    other = lib.explain(image_id, "watch")
    assert other.label == "watch" and other.predicted == "bonsai" and other.confidence < 0.5
    assert not np.array_equal(other.heatmap, first.heatmap)
    occluded = lib.explain(image_id, method="occlusion")  # the fallback, through the indexing runtime
    assert occluded.method == "occlusion" and occluded.heatmap.shape == first.heatmap.shape
    assert 0.0 <= occluded.heatmap.min() and 0.5 < occluded.heatmap.max() <= 1.0
    # retrained on changed labels: a new model, and the old model's map is not shown as current
    lib.label_ids(lib.resolve_paths(["bonsai/image_0004.jpg"]), "watch")
    m = lib.train(force=True)
    assert m["model_id"] != first.model_id
    fresh = lib.explain(image_id)
    assert fresh.model_id == m["model_id"] and not fresh.cached


def test_deletion_test_on_sample_data_with_controls(trained):
    """Blanking the map's top 20% must hurt the predicted label more than 20% at random, and more
    than the top 20% of another label's map (a check that could come out the other way)."""
    from organizer.learn.model import load_model
    from organizer.ingest.decode import decode_image
    from organizer.learn.explain import Explainer
    from organizer.learn.explain_check import deletion_test
    from organizer.library import Library

    lib = Library(trained)
    emb = lib.embedder()
    paths = [f"{c}/{f}" for c in sorted({truth(p) for p in lib.store.primary_paths().values()})
             for f in ("image_0005.jpg", "image_0006.jpg")]  # never labeled
    crops = np.stack([emb.preprocess.crop(decode_image((SAMPLE / p).read_bytes(), min_side=256).image)
                      for p in paths])
    result, _ = deletion_test(Explainer(emb, load_model(lib.store)), crops)
    print(result.as_dict())
    assert result.n == 16
    assert result.drop_map > 3 * max(result.drop_random_region, result.drop_random_pixels, result.drop_wrong_label)
    for control in ("random_region", "random_pixels", "wrong_label"):  # more images won than lost, by a margin
        assert getattr(result, f"holds_vs_{control}") >= 2 * getattr(result, f"reversed_vs_{control}") + 0.1


MODEL = "ViT-S-32-alt"


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    from organizer.embed import get_embedder

    path = random_clip_checkpoint(tmp_path_factory.mktemp("clip"), MODEL)
    return get_embedder(f"clip:{MODEL}:{path}", quiet=True)


def test_clip_vit_path_runs_on_a_random_checkpoint(vit):
    """Random weights: only shapes, ranges and agreement with the prediction path are checked."""
    from organizer.learn.model import LinearModel
    from organizer.embed import l2_normalize
    from organizer.learn.explain import Explainer, target_layer
    from organizer.learn.explain_check import deletion_test

    layer, kind = target_layer(vit)
    assert kind == "vit" and layer is vit.visual.transformer.resblocks[-2]  # class-token pooling
    rng = np.random.default_rng(0)
    head = LinearModel(["a", "b", "c"], rng.normal(0, 1, (3, vit.dim)).astype(np.float32), np.zeros(3, np.float32),
                       vit.name, 0.0)
    size = vit.preprocess.size
    crops = np.stack([vit.preprocess.crop(Image.open(SAMPLE / p).convert("RGB"))
                      for p in ("ketch/image_0001.jpg", "watch/image_0002.jpg", "bonsai/image_0003.jpg")])
    explainer = Explainer(vit, head)
    maps, proba = explainer.maps(crops, np.array([[0, 1], [1, 2], [2, 0]]))
    grid = tuple(vit.visual.grid_size)
    assert explainer.method == "gradcam" and maps.shape == (3, 2, *grid) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0 and (maps.reshape(6, -1).max(1) > 0).all()
    expected = head.predict_proba(l2_normalize(vit.features(vit.preprocess.normalize(crops)))[0])
    assert np.allclose(proba, expected, atol=1e-4)
    result, _ = deletion_test(explainer, crops)
    assert result.n == 3 and np.isfinite(result.drop_map) and size == crops.shape[1]
