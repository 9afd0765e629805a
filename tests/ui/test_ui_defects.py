"""Defects found by using the app for a day (issue 13), each pinned by a test that failed before its fix."""
from __future__ import annotations

import csv
import io
from organizer.library import Library
from organizer.learn.review import held_out_proba  # noqa: F401  (the fix under test)


def assert_clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def texts(at) -> str:
    return "\n".join(str(e.value) for kind in ("title", "markdown", "caption", "info", "success", "warning", "error",
                                                "subheader") for e in getattr(at, kind))


def _cell(at, given, predicted):
    # what the browser sends when a cell of the confusion chart is clicked
    at.session_state["confusion"] = {"selection": {"cell": [{"given": given, "predicted": predicted}]}}
    at.run()


def test_confusion_cells_next_to_label_issues(open_app, trained_copy):
    lib = Library(trained_copy)
    classes = lib.current_model().classes
    wrong = lib.cluster_members(lib.clusters()[0].id)[:3]
    other = next(c for c in classes if c != lib.store.labels()[wrong[0]])
    lib.label_ids(wrong, other)  # planted mistakes, so "Labels that look wrong" shows a grid too
    assert lib.label_issues(24)
    at = open_app(trained_copy, "views/train.py")
    assert_clean(at)
    for given, predicted in [(classes[0], classes[0]), (classes[0], classes[1])]:  # a full cell, an empty one
        _cell(at, given, predicted)
        assert_clean(at)
        assert f"Named “{given}”, predicted “{predicted}”" in texts(at)


def test_review_after_every_cluster_is_named(open_app, trained_copy):
    lib = Library(trained_copy)
    assert lib.store.counts()["labeled"] == 160, "every image carries a cluster name"
    queue = lib.review(12)
    assert len(queue) == 12 and all(r.label for r in queue), "cluster-named images are reviewable"
    # the confidence shown is the held-out one, not the model's certainty about its own training images
    import numpy as np

    from organizer.learn.model import load_model
    from organizer.store.vectors import load_vectors

    model = load_model(lib.store)
    ids, X = load_vectors(lib.store, [r.image_id for r in queue])
    held = held_out_proba(lib.store, ids, model.predict_proba(X), model.classes).max(axis=1)
    assert np.allclose([r.confidence for r in queue], held, atol=1e-4)
    at = open_app(trained_copy, "views/review.py")
    assert_clean(at)
    assert "Nothing left to review" not in texts(at)
    said = [m.value for m in at.markdown if m.value.startswith("Model says")]
    assert len(said) == 12 and not any("(100%)" in m for m in said), said


def test_a_correction_is_a_manual_label(open_app, trained_copy):
    at = open_app(trained_copy, "views/review.py")
    fix = next(b for b in at.button if b.key and b.key.startswith("fix:"))
    _, fixed, name = fix.key.split(":", 2)
    fix.click().run()
    assert_clean(at)
    ok = next(b for b in at.button if b.key and b.key.startswith("ok:"))
    confirmed = ok.key.split(":", 1)[1]
    ok.click().run()
    assert_clean(at)
    lib = Library(trained_copy)
    rows = {r["image_id"]: r for r in csv.DictReader(io.StringIO(lib.export_bytes("csv").decode()))}
    assert (rows[fixed]["label"], rows[fixed]["label_source"]) == (name, "manual")
    assert rows[confirmed]["label_source"] == "accepted"


def test_merge_shows_both_names_and_unticks_the_survivor(open_app, ui_copy):
    lib = Library(ui_copy)
    a, b = [c.id for c in lib.clusters() if c.id >= 0][:2]
    lib.name_cluster(a, "sailboat")
    lib.name_cluster(b, "airliner")
    at = open_app(ui_copy)
    at.checkbox(key=f"merge-{a}").check().run()
    at.checkbox(key=f"merge-{b}").check().run()
    next(x for x in at.button if x.label.startswith("Merge the 2")).click().run()
    assert_clean(at)
    target = next(c.id for c in Library(ui_copy).clusters() if c.id in (a, b))
    assert at.checkbox(key=f"merge-{target}").value is False, "the survivor's merge box is unticked"
    shown = texts(at)
    assert "also “" in shown and "sailboat" in shown and "airliner" in shown
    assert "give it one name" in shown


def test_a_refused_name_stays_in_the_box(open_app, ui_copy):
    at = open_app(ui_copy)
    box = next(t for t in at.text_input if t.key and t.key.startswith("name-"))
    cluster = int(box.key.split("-", 1)[1])
    long_name = "x" * 600
    box.input(long_name)
    next(b for b in at.button if b.label == "Name it" and b.form_id == f"form-{cluster}").click().run()
    assert not at.exception
    assert any("200 characters" in e.value for e in at.error)
    assert at.text_input(key=f"name-{cluster}").value == long_name
    assert not Library(ui_copy).store.labels()


def test_move_targets_show_current_sizes(open_app, ui_copy):
    lib = Library(ui_copy)
    first, second = [c.id for c in lib.clusters() if c.id >= 0][:2]
    size = len(lib.cluster_members(second))
    at = open_app(ui_copy, params={"cluster": str(first)})
    members = lib.cluster_members(first)
    for i in members[:2]:
        at.checkbox(key=f"cb:c{first}:{i}").check().run()
    at.selectbox(key=f"c{first}:target").set_value(second).run()
    next(b for b in at.button if b.label == "Move").click().run()
    assert_clean(at)
    options = at.selectbox(key=f"c{first}:target").options
    assert f"cluster {second} ({size + 2})" in options, options


def test_regroup_refuses_a_size_that_leaves_everything_unsorted(open_app, ui_copy):
    lib = Library(ui_copy)
    before = lib.store.current_clustering_id()
    at = open_app(ui_copy)
    at.number_input(key="regroup:size").set_value(500).run()
    next(b for b in at.button if b.label == "Re-group").click().run()
    assert not at.exception
    assert any("nothing was changed" in e.value for e in at.error)
    assert lib.store.current_clustering_id() == before
    assert sum(c.id >= 0 for c in lib.clusters()) > 0


def test_predictions_floor_reads_like_the_captions(open_app, trained_store):
    at = open_app(trained_store, "views/predictions.py")
    at.slider(key="pred:floor").set_value(100).run()
    assert_clean(at)
    captions = [c.value for c in at.caption if c.value.endswith("%") or "% ·" in c.value]
    assert captions and all(c.startswith("100%") for c in captions), captions
    assert "confidence ≥ 100%" in texts(at)
    shown = int(next(m.value for m in at.markdown if "images** predicted" in m.value).split("**")[1].split()[0])
    label = at.selectbox(key="pred:label").value
    every = Library(trained_store).predictions(label)
    assert shown == sum(f"{r.confidence:.0%}" == "100%" for r in every)


def test_label_issues_on_a_correctly_named_library_after_a_review_answer(trained_copy):
    """One confirmed review answer used to make its class 'two groups', listing every other
    correctly named image of it ("sunflower -> bonsai?" on 18 of 19 correct sunflowers)."""
    lib = Library(trained_copy)
    paths = lib.store.primary_paths()
    sunflowers = sorted(i for i, p in paths.items() if p.startswith("sunflower/"))
    lib.answer(sunflowers[:1], "sunflower")
    listed = lib.label_issues(24)
    correct = [r for r in listed if paths[r.image_id].split("/")[0] == r.label]
    assert not correct, [(r.label, r.suggested, r.score) for r in correct]
    # a real slip is still found: a few sunflowers given the bonsai name by hand
    lib.label_ids(sunflowers[1:4], "bonsai")
    flagged = {r.image_id for r in lib.label_issues(24)}
    assert set(sunflowers[1:4]) <= flagged
