"""The map: a lasso or a box selects exactly the dots inside it (all of them, not only the drawn
sample), and the selection is named or tagged in one step."""
from __future__ import annotations

import numpy as np
from organizer.library import Library
from organizer.app.mapselect import in_box, in_polygon, selected


def assert_clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_lasso_and_box_geometry():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-1, 1, (100_000, 2)).astype(np.float32)
    square = in_polygon(xy, [-0.5, 0.5, 0.5, -0.5], [-0.5, -0.5, 0.5, 0.5])
    assert np.array_equal(square, in_box(xy, [0.5, -0.5], [-0.5, 0.5]))
    triangle = in_polygon(xy, [0, 1, 0], [0, 0, 1])  # x, y >= 0 and x + y <= 1
    expect = (xy[:, 0] > 0) & (xy[:, 1] > 0) & (xy.sum(axis=1) < 1)
    assert (triangle != expect).sum() <= 5, "only dots on the outline may differ"
    assert abs(triangle.mean() - 1 / 8) < 0.01
    both = selected(xy, {"box": [{"x": [-1, -0.9], "y": [-1, 1]}], "lasso": [{"x": [0, 1, 0], "y": [0, 0, 1]}]})
    assert both.sum() == (in_box(xy, [-1, -0.9], [-1, 1]) | triangle).sum()
    assert not selected(xy, {"box": [], "lasso": [{"x": [0, 1], "y": [0, 1]}]}).any(), "a line encloses nothing"


def _select(at, shape: dict):
    # what the browser sends after a lasso or box on the plotly chart
    at.session_state["map-chart"] = {"selection": {"points": [], "point_indices": [], "box": [], "lasso": [],
                                                   **shape}}
    at.run()


def test_lasso_on_the_map_names_and_tags_the_selection(open_app, ui_copy):
    lib = Library(ui_copy)
    ids, xy = lib.map_coords(compute=False)
    cx, cy = np.median(xy, axis=0)
    lasso = {"x": [float(xy[:, 0].min()) - 1, float(cx), float(cx)], "y": [float(cy), float(cy), float(xy[:, 1].max()) + 1]}
    inside = [i for i, m in zip(ids, in_polygon(xy, lasso["x"], lasso["y"])) if m]
    assert 0 < len(inside) < len(ids)
    lib.label_ids(ids[:1], "lassoed")  # AppTest cannot type a new option, so the name exists already
    at = open_app(ui_copy, "views/map.py")
    assert_clean(at)
    _select(at, {"lasso": [lasso]})
    assert_clean(at)
    assert f"{len(inside)} images selected" in [s.value for s in at.subheader]
    at.selectbox(key="map:label:name").set_value("lassoed").run()
    next(b for b in at.button if b.label.startswith("Name the")).click().run()
    assert_clean(at)
    assert {i for i, n in lib.store.labels().items() if n == "lassoed"} == set(inside) | set(ids[:1])
    assert lib.history(1)[0].kind == "label", "a map naming can be undone"
    _select(at, {"lasso": [lasso]})  # the browser keeps the lasso drawn; AppTest forgets it on a click
    at.text_input(key="map:tag").input("left half")
    next(b for b in at.button if b.label.startswith("Tag the")).click().run()
    assert_clean(at)
    from organizer.learn.tags import image_tags

    tags = image_tags(lib.store)
    assert {i for i in ids if "left half" in tags.get(i, set())} == set(inside)
    _select(at, {"box": [{"x": [float(cx), float(xy[:, 0].max()) + 1], "y": [float(xy[:, 1].min()) - 1,
                                                                          float(xy[:, 1].max()) + 1]}]})
    assert_clean(at)
    right = int((xy[:, 0] >= cx).sum())
    assert f"{right} images selected" in [s.value for s in at.subheader]
