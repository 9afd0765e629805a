"""Heatmaps in the app (AppTest): the toggles on Predictions and Review draw the current model's
maps for the images on screen, and the Train page's drill-down helper draws them for a label."""
from __future__ import annotations

import json

from conftest import ROOT
from organizer.learn.explain import model_key
from organizer.library import Library


def kinds(node, out=None) -> list[str]:
    out = [] if out is None else out
    out.append(getattr(node, "type", type(node).__name__))
    for child in getattr(node, "children", {}).values():
        kinds(child, out)
    return out


def cached_maps(store) -> dict[str, set[int]]:
    """{image id: label indices} with a map of the *current* model in the store's cache."""
    lib = Library(store)
    folder = lib.store.root / "explain" / model_key(lib.store, lib.store.current_model())
    out: dict[str, set[int]] = {}
    for f in folder.glob("*.npz") if folder.exists() else []:
        image_id, label, _method, _ = f.name.split(".")
        out.setdefault(image_id, set()).add(int(label))
    return out


def test_predictions_toggle_shows_heatmaps(open_app, trained_copy):
    at = open_app(trained_copy, "views/predictions.py")
    assert not at.exception and not cached_maps(trained_copy)
    shown = kinds(at.main).count("image")
    at.toggle(key="explain:pred").set_value(True).run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    assert kinds(at.main).count("image") == shown > 0
    lib = Library(trained_copy)
    label = at.selectbox(key="pred:label").value
    on_page = [r[0] for r in lib.store.db.execute("SELECT image_id FROM predictions WHERE label=?", (label,))]
    maps = cached_maps(trained_copy)
    assert len(maps) == shown and set(maps) <= set(on_page)


def test_review_toggle_shows_heatmaps_of_the_guess(open_app, trained_copy):
    lib = Library(trained_copy)
    lib.store.remove_labels(lib.store.present_image_ids()[::20])  # every image is named: free a few to review
    lib.close()
    at = open_app(trained_copy, "views/review.py")
    at.toggle(key="explain:review").set_value(True).run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    classes = json.loads(Library(trained_copy).store.current_model()["classes"])
    guesses = {b.key.split(":", 1)[1]: b.label[2:] for b in at.button if b.key and b.key.startswith("ok:")}
    maps = cached_maps(trained_copy)
    assert guesses and set(maps) == set(guesses)
    assert all(maps[i] == {classes.index(name)} for i, name in guesses.items())


def _drill_down(ids: list[str], label: str):
    from organizer.app import explain_view

    explain_view.grid(ids, label=label)


def test_confusion_drill_down_helper_draws_the_wrong_label(trained_copy, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ORGANIZER_STORE", str(trained_copy))
    lib = Library(trained_copy)
    classes = json.loads(lib.store.current_model()["classes"])
    ids = lib.store.present_image_ids()[:3]
    at = AppTest.from_function(_drill_down, args=(ids, classes[-1]), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert kinds(at.main).count("image") == 3
    assert cached_maps(trained_copy) == {i: {len(classes) - 1} for i in ids}
