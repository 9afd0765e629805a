"""Multi-label tags through the CLI on the real sample store: tag, list, train (per-tag
thresholds from cross-validation), predict, and the columns export will carry."""
from __future__ import annotations

import json

import numpy as np

from support import SAMPLE, run_cli, truth

GROUPS = {"vehicle": ("airplanes", "Motorbikes", "ketch"), "nature": ("bonsai", "sunflower", "Leopards"),
          "indoor": ("grand_piano", "watch")}


def cli(*args, check=True):
    return run_cli(*args, check=check)


def sample_paths():
    return sorted(p.relative_to(SAMPLE).as_posix() for p in SAMPLE.rglob("*.jpg"))


def test_tag_train_predict_export(store_copy):
    paths = sample_paths()
    by_class = {}
    for p in paths:
        by_class.setdefault(truth(p), []).append(p)
    # A person tags half of each class; the other half is what the model must get right.
    tagged = {c: ps[::2] for c, ps in by_class.items()}
    held = {c: ps[1::2] for c, ps in by_class.items()}
    for tag, classes in GROUPS.items():
        cli("tag", *[p for c in classes for p in tagged[c]], "--add", tag, "--store", store_copy)
    cli("tag", *tagged["Leopards"], "--add", "animal", "--store", store_copy)  # a second tag on some images

    listed = {t["tag"]: t for t in json.loads(cli("tags", "--json", "--store", store_copy).stdout)}
    assert listed["vehicle"]["images"] == sum(len(tagged[c]) for c in GROUPS["vehicle"])
    assert listed["animal"]["images"] == len(tagged["Leopards"])

    out = json.loads(cli("train-tags", "--json", "--store", store_copy).stdout)
    per_tag = out["per_tag"]
    assert set(per_tag) == {"vehicle", "nature", "indoor", "animal"}
    for tag, m in per_tag.items():
        assert 0.0 < m["threshold"] < 1.0, (tag, m)
        assert m["f1"] >= 0.8, (tag, m)
        assert {"precision", "recall", "f1", "threshold", "positives", "negatives"} <= set(m)
    # Saved as arrays + JSON that load without pickle.
    stem = store_copy / "models" / f"tags-{out['model_id']:05d}"
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as arrays:
        assert arrays["coef"].shape[0] == 4 and arrays["thresholds"].shape == (4,)
    assert json.loads(stem.with_suffix(".json").read_text())["format"] == "organizer-tags-v1"

    cli("predict-tags", "--store", store_copy)
    from organizer.store import Store
    from organizer.learn.tags import export_columns

    with Store(store_copy, create=False) as store:
        cols = export_columns(store)
        path_id = {p: store.path_to_image_id(p) for p in paths}
    correct = total = 0
    for c, ps in held.items():
        for p in ps:
            predicted = set(filter(None, cols[path_id[p]]["predicted_tags"].split(";")))
            expected = {t for t, classes in GROUPS.items() if c in classes} | ({"animal"} if c == "Leopards" else set())
            correct += predicted == expected
            total += 1
    assert correct / total >= 0.85, f"{correct}/{total} held-out images got exactly their tags"
    leopard = cols[path_id[tagged["Leopards"][0]]]
    assert leopard["tags"] == "animal;nature"
    assert set(cols) >= set(path_id.values())

    # Removing a tag is undone on that image only.
    cli("tag", tagged["Leopards"][0], "--remove", "animal", "--store", store_copy)
    listed = {t["tag"]: t for t in json.loads(cli("tags", "--json", "--store", store_copy).stdout)}
    assert listed["animal"]["images"] == len(tagged["Leopards"]) - 1


def test_bad_input_is_one_line(store_copy):
    bad = cli("tag", "no/such.jpg", "--add", "x", "--store", store_copy, check=False)
    assert bad.returncode != 0 and "no/such.jpg" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    some = sample_paths()[0]
    semi = cli("tag", some, "--add", "a;b", "--store", store_copy, check=False)
    assert semi.returncode != 0 and "';'" in semi.stderr
    nothing = cli("tag", some, "--store", store_copy, check=False)
    assert nothing.returncode != 0 and "--add" in nothing.stderr
    untrained = cli("predict-tags", "--store", store_copy, check=False)
    assert untrained.returncode != 0 and "train-tags" in untrained.stderr
    # Only one tag and no image without it: no model, and the message says why.
    cli("tag", *sample_paths()[:5], "--add", "lonely", "--store", store_copy)
    short = cli("train-tags", "--store", store_copy, check=False)
    assert short.returncode != 0 and "lonely" in short.stderr and "--untagged-negative" in short.stderr
    # ...and with untagged images as negatives it trains.
    ok = json.loads(cli("train-tags", "--untagged-negative", "--json", "--store", store_copy).stdout)
    assert ok["per_tag"]["lonely"]["negatives"] == len(sample_paths()) - 5
