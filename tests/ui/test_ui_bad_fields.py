"""Bad input in every text and number field of the app (empty, 10,000 characters, HTML, emoji,
negative and huge numbers) gives a message, never a traceback; so does a store that refuses an
operation (a read-only SQLite connection, a closed one)."""
from __future__ import annotations

import numpy as np
import pytest
from organizer.library import Library

TEXTS = ["", "   ", "x" * 10_000, "<script>alert(1)</script>", "<b>bold</b> & <img src=x onerror=alert(1)>",
         "📷🐶 ünïcødé", "-1", "1e309", "99999999999999999999999999"]
NUMBERS = [-1, -10**12, 10**12, 10**30, 0.5]
MESSAGES = ("error", "warning", "success", "info")


def said(at) -> list[str]:
    return [e.value for kind in MESSAGES for e in getattr(at, kind)]


def assert_message_no_traceback(at):
    assert not at.exception, [e.value for e in at.exception]
    assert said(at), "the person is told what happened"
    assert not any("<script>" in m.value and m.allow_html for m in at.markdown if hasattr(m, "allow_html"))


def _card(lib):
    return next(c.id for c in lib.clusters(samples=0) if c.id >= 0)


def _parent(lib):
    return min((c for c in lib.clusters(samples=0, tree=True) if c.level == "parent"), key=lambda c: c.size).id


# each field: (store fixture, page or params, how to fill it in and submit)
def fill_index_folder(at, lib, value):
    at.text_input[0].input(value)
    next(b for b in at.button if b.label == "Index and group").click().run()


def fill_card_name(at, lib, value):
    c = _card(lib)
    at.text_input(key=f"name-{c}").input(value)
    next(b for b in at.button if b.label == "Name it" and b.form_id == f"form-{c}").click().run()


def fill_parent_name(at, lib, value):
    p = _parent(lib)
    at.text_input(key=f"node-name-{p}").input(value)
    next(b for b in at.button if b.form_id == f"node-form-{p}").click().run()


def fill_search_text(at, lib, value):
    at.radio(key="search:mode").set_value("Text").run() if "Text" in at.radio(key="search:mode").options else None
    boxes = [t for t in at.text_input if t.label.startswith("Describe")]
    if boxes:
        boxes[0].input(value).run()


def fill_search_find(at, lib, value):
    mode = at.radio(key="search:mode")
    mode.set_value(next(o for o in mode.options if "library image" in o)).run()
    at.text_input(key="search:find").input(value).run()


def fill_map_tag(at, lib, value):
    ids, xy = lib.map_coords(compute=False)
    at.session_state["map-chart"] = {"selection": {"points": [], "point_indices": [], "lasso": [], "box": [
        {"x": [float(xy[:, 0].min()) - 1, float(xy[:, 0].max()) + 1],
         "y": [float(xy[:, 1].min()) - 1, float(xy[:, 1].max()) + 1]}]}}
    at.run()
    at.text_input(key="map:tag").input(value)
    next(b for b in at.button if b.label.startswith("Tag the")).click().run()


def fill_map_name(at, lib, value):
    """The name picker (a name in use, or any typed one) under a box selection on the map."""
    ids, xy = lib.map_coords(compute=False)
    at.session_state["map-chart"] = {"selection": {"points": [], "point_indices": [], "lasso": [], "box": [
        {"x": [float(xy[:, 0].min()) - 1, float(xy[:, 0].max()) + 1],
         "y": [float(xy[:, 1].min()) - 1, float(xy[:, 1].max()) + 1]}]}}
    at.run()
    at.selectbox(key="map:label:name").set_value(value)
    next(b for b in at.button if b.label.startswith("Name the")).click().run()


TEXT_FIELDS = {
    "library folder": ("empty_store", None, fill_index_folder),
    "cluster name": ("ui_copy", None, fill_card_name),
    "group-of-groups name": ("ui_copy", None, fill_parent_name),
    "search text": ("ui_store", "views/search.py", fill_search_text),
    "map tag": ("ui_copy", "views/map.py", fill_map_tag),
    "map name picker": ("ui_copy", "views/map.py", fill_map_name),
}


@pytest.mark.parametrize("value", TEXTS, ids=lambda v: repr(v[:12]))
@pytest.mark.parametrize("field", list(TEXT_FIELDS))
def test_text_fields(open_app, request, tmp_path, field, value):
    fixture, page, fill = TEXT_FIELDS[field]
    store = tmp_path / "store" if fixture == "empty_store" else request.getfixturevalue(fixture)
    at = open_app(store, page)
    lib = Library(store)
    fill(at, lib, value)
    assert not at.exception, [e.value for e in at.exception]
    if field not in ("search text", "search file name"):  # a search answers with results or a message
        assert said(at), "the person is told what happened"
    for m in at.markdown:  # a name is shown as text, never as live HTML
        assert "<script" not in m.value or not getattr(m, "allow_html", False)


def fill_regroup_size(at, value):
    at.number_input(key="regroup:size").set_value(value)
    next(b for b in at.button if b.label == "Re-group").click().run()


def fill_regroup_seed(at, value):
    at.number_input(key="regroup:seed").set_value(value)
    next(b for b in at.button if b.label == "Re-group").click().run()


@pytest.mark.parametrize("value", NUMBERS)
@pytest.mark.parametrize("fill", [fill_regroup_size, fill_regroup_seed], ids=["smallest group", "seed"])
def test_number_fields_on_the_clusters_page(open_app, ui_copy, fill, value):
    before = Library(ui_copy).store.current_clustering_id()
    at = open_app(ui_copy)
    fill(at, value)
    assert not at.exception, [e.value for e in at.exception]
    # Streamlit's number_input clamps the value into its bounds before the page sees it, so the
    # re-group runs with a valid number and says what it did (the page refuses anything else)
    assert said(at) and before is not None


@pytest.mark.parametrize("value", [-1, 0, 10**12])
def test_page_number_of_a_big_cluster(open_app, ui_copy, value):
    lib = Library(ui_copy)
    first, second, third = [c.id for c in lib.clusters(samples=0) if c.id >= 0][:3]
    target = lib.merge_clusters([first, second, third])  # > one page of thumbnails
    at = open_app(ui_copy, params={"cluster": str(target)})
    at.number_input(key=f"page:c{target}").set_value(value).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.key and c.key.startswith(f"cb:c{target}:") for c in at.checkbox), "a page of images is shown"


# -- a store that refuses the operation ---------------------------------------------------------
def _app_library():
    from organizer.app import common

    return common


@pytest.mark.parametrize("fault", ["read-only", "closed"])
def test_a_failing_store_is_a_message(open_app, ui_copy, fault):
    at = open_app(ui_copy)
    common = _app_library()
    lib = common._open(str(ui_copy.resolve()))  # the app's own cached Library
    if fault == "read-only":
        lib.store.db.execute("PRAGMA query_only=1")  # SQLite refuses every write on this connection
    else:
        lib.store.db.close()
    c = _card(Library(ui_copy))
    at.text_input(key=f"name-{c}").input("anything")
    next(b for b in at.button if b.label == "Name it" and b.form_id == f"form-{c}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.error, "the failure is said"
    assert not Library(ui_copy).store.labels(), "nothing was half-written"
    at.run()  # the next run reopens the store
    assert not at.exception, [e.value for e in at.exception]
