"""The whole loop through the CLI, on real photos: index, cluster, name, train, predict, export."""
from __future__ import annotations

import collections
import csv
import json

from support import SAMPLE, run_cli, truth


def name_clusters_like_a_person(store):
    """Name every cluster after the true class most of its members have, as simulate_user does."""
    infos = json.loads(run_cli("clusters", "--store", store, "--json", "--samples", "1000").stdout)
    named = 0
    for c in infos:
        if c["id"] < 0 or c["level"] != "group":  # parents and sub-groups overlap the clusters
            continue
        top, count = collections.Counter(truth(p) for p in c["sample_paths"]).most_common(1)[0]
        if 2 * count >= len(c["sample_paths"]):
            run_cli("name", c["id"], top, "--store", store)
            named += 1
    return infos, named


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_whole_loop(store_copy, tmp_path):
    infos, named = name_clusters_like_a_person(store_copy)
    clusters = [c for c in infos if c["id"] >= 0 and c["level"] == "group"]
    assert all(c["parent"] == -1 or c["parent"] in {x["id"] for x in infos} for c in infos)
    assert 4 <= len(clusters) <= 16, f"{len(clusters)} clusters for 8 classes"
    assert named >= 4
    assert all(c["suggestions"] for c in clusters), "every cluster has suggested names"

    out = run_cli("train", "--store", store_copy).stdout
    assert "cross-validated" in out and "macro-F1" in out and "confusion matrix" in out

    run_cli("predict", "--store", store_copy)
    export = tmp_path / "out.csv"
    run_cli("export", "--store", store_copy, "--format", "csv", "--out", export)
    rows = read_csv(export)
    assert {"path", "cluster", "label", "predicted", "confidence"} <= set(rows[0])
    assert len(rows) == 160
    accuracy = sum(truth(r["path"]) == r["predicted"] for r in rows) / len(rows)
    assert accuracy >= 0.85, accuracy
    assert all(0.0 <= float(r["confidence"]) <= 1.0 for r in rows)
    assert all(int(r["cluster"]) >= -1 for r in rows)

    # new images are labeled on the fly without joining the library
    probe = sorted((SAMPLE / "sunflower").glob("*.jpg"))[0]
    result = json.loads(run_cli("predict", probe, "--store", store_copy, "--json").stdout)
    assert result[0]["predicted"] == "sunflower"
    assert read_csv(export) == rows  # predicting files added nothing

    js = tmp_path / "out.json"
    run_cli("export", "--store", store_copy, "--format", "json", "--out", js)
    assert len(json.loads(js.read_text())) == 160


def test_suggestions_are_readable_imagenet_names(sample_store):
    infos = json.loads(run_cli("clusters", "--store", sample_store, "--json").stdout)
    names = {n for c in infos for n in c["suggestions"]}
    assert names and not any(n.startswith("n0") for n in names)
    by_class = {}
    for c in infos:
        if c["id"] >= 0:
            by_class.setdefault(collections.Counter(truth(p) for p in c["sample_paths"]).most_common(1)[0][0],
                                c["suggestions"])
    # the ImageNet head recognises at least some of these classes by name
    hits = sum(any(word in " ".join(s) for word in hint) for cls, s in by_class.items()
               for hint in [{"airplanes": ("airliner", "warplane", "aircraft", "wing"), "sunflower": ("daisy",),
                             "grand_piano": ("piano",), "watch": ("watch", "clock", "stopwatch"),
                             "Motorbikes": ("moped", "motor", "scooter"), "Leopards": ("leopard", "jaguar", "cheetah"),
                             "ketch": ("schooner", "yawl", "catamaran", "trimaran"), "bonsai": ("pot",)}.get(cls, ())])
    assert hits >= 3, by_class


def test_similar_finds_same_class(sample_store):
    out = json.loads(run_cli("similar", "sunflower/image_0001.jpg", "--store", sample_store, "-k", "5",
                             "--json").stdout)
    assert len(out) == 5 and out[0]["path"] != "sunflower/image_0001.jpg"
    assert sum(truth(h["path"]) == "sunflower" for h in out) >= 4
    assert out[0]["score"] >= out[-1]["score"]


def test_text_search_needs_clip(sample_store):
    proc = run_cli("search", "a sunflower", "--store", sample_store, check=False)
    assert proc.returncode != 0 and "CLIP" in proc.stderr


def test_label_overrides_and_survives_recluster(store_copy):
    run_cli("label", "watch/image_0001.jpg", "--as", "my watch", "--store", store_copy)
    run_cli("cluster", "--store", store_copy, "--seed", "3", "--min-cluster-size", "6")
    rows = {r["path"]: r for r in _export(store_copy)}
    assert rows["watch/image_0001.jpg"]["label"] == "my watch"


def _export(store):
    import tempfile
    from pathlib import Path

    out = Path(tempfile.mkdtemp()) / "e.csv"
    run_cli("export", "--store", store, "--format", "csv", "--out", out)
    return read_csv(out)


def test_same_seed_same_clusters(store_copy):
    first = {r["path"]: r["cluster"] for r in _export(store_copy)}
    run_cli("cluster", "--store", store_copy)
    assert {r["path"]: r["cluster"] for r in _export(store_copy)} == first


def test_unknown_threshold_needs_evidence():
    import numpy as np

    from organizer.learn.classify import learn_threshold

    conf = np.linspace(0.3, 1.0, 500)
    correct = np.ones(500, bool)
    correct[0] = False  # one unlucky mistake is not a pattern
    assert learn_threshold(conf, correct) == 0.0
    correct[:60] = np.arange(60) % 4 == 0  # a band of answers right only 1 time in 4 is
    assert 0.3 < learn_threshold(conf, correct) < 0.45
    # ... among 3 classes; among 10, right 1 time in 4 is 2.5x chance: a guess worth showing
    assert learn_threshold(conf, correct, n_classes=10) == 0.0
    correct[:60] = np.arange(60) % 10 == 0  # right 1 time in 10 among 10 classes is guessing
    assert 0.3 < learn_threshold(conf, correct, n_classes=10) < 0.45
