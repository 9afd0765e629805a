"""Every page through streamlit's AppTest: renders on an empty store, on sample_data, and after
naming and training; actions on the pages change the store."""
from __future__ import annotations

import pytest
from organizer.library import Library

PAGES = ["views/library.py", "views/clusters.py", "views/map.py", "views/search.py", "views/train.py",
         "views/review.py", "views/predictions.py"]


def texts(at) -> str:
    parts = [e.value for kind in ("title", "markdown", "caption", "info", "success", "warning", "error")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def assert_clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("kind", ["empty", "sample", "trained"])
def test_page_renders(kind, page, open_app, request):
    store = request.getfixturevalue({"empty": "empty_store", "sample": "ui_store", "trained": "trained_store"}[kind])
    at = open_app(store, page)
    assert_clean(at)
    assert at.title, "every page has a title"


def test_landing_page_follows_the_store(open_app, empty_store, ui_store):
    empty = open_app(empty_store)
    assert empty.title[0].value == "Library" and "Index and group" in [b.label for b in empty.button]
    full = open_app(ui_store)
    assert full.title[0].value == "Clusters"
    assert any(b.key and b.key.startswith("sug-") for b in full.button), "suggestions are one-click buttons"


def test_naming_a_cluster_by_suggestion_changes_the_store(open_app, ui_copy):
    at = open_app(ui_copy)
    first = next(b for b in at.button if b.key and b.key.startswith("sug-"))
    cluster = int(first.key.split("-")[1])
    first.click().run()
    assert_clean(at)
    lib = Library(ui_copy)
    members = lib.cluster_members(cluster)
    assert {lib.store.labels().get(i) for i in members} == {first.label}
    assert f"named “{first.label}”" in texts(at)


def test_naming_a_cluster_by_typing(open_app, ui_copy):
    at = open_app(ui_copy)
    box = next(t for t in at.text_input if t.key and t.key.startswith("name-"))
    cluster = int(box.key.split("-", 1)[1])
    box.input("my bonsais")
    submit = next(b for b in at.button if b.label == "Name it" and b.form_id == f"form-{cluster}")
    submit.click().run()
    assert_clean(at)
    lib = Library(ui_copy)
    assert {lib.store.labels().get(i) for i in lib.cluster_members(cluster)} == {"my bonsais"}


def test_open_cluster_select_and_drop(open_app, ui_copy):
    lib = Library(ui_copy)
    cluster = lib.clusters()[0].id
    at = open_app(ui_copy, params={"cluster": str(cluster)})
    assert_clean(at)
    members = lib.cluster_members(cluster)
    boxes = [c for c in at.checkbox if c.key and c.key.startswith(f"cb:c{cluster}:")]
    assert len(boxes) == len(members)
    boxes[0].check().run()
    next(b for b in at.button if b.label == "Drop them to unsorted").click().run()
    assert_clean(at)
    dropped = boxes[0].key.rsplit(":", 1)[1]
    assert lib.store.cluster_assignments()[dropped][0] == -1
    assert len(lib.cluster_members(cluster)) == len(members) - 1


def test_open_cluster_move_name_and_split(open_app, ui_copy):
    lib = Library(ui_copy)
    first, second = [c.id for c in lib.clusters() if c.id >= 0][:2]
    lib.name_cluster(second, "target group")
    at = open_app(ui_copy, params={"cluster": str(first)})
    members = lib.cluster_members(first)
    at.checkbox(key=f"cb:c{first}:{members[0]}").check().run()
    at.selectbox(key=f"c{first}:target").set_value(second).run()
    next(b for b in at.button if b.label == "Move").click().run()
    assert_clean(at)
    assert lib.store.cluster_assignments()[members[0]][0] == second
    assert lib.store.labels()[members[0]] == "target group", "a moved image takes its new group's name"

    at.checkbox(key=f"cb:c{first}:{members[1]}").check().run()
    # AppTest cannot type a new option into a selectbox, so pick a name in use (typing is the same call)
    at.selectbox(key=f"c{first}:label:name").set_value("target group").run()
    next(b for b in at.button if b.label == "Name them").click().run()
    assert_clean(at)
    assert lib.store.labels()[members[1]] == "target group"
    assert lib.store.cluster_assignments()[members[1]][0] == first, "naming does not move an image"

    next(b for b in at.button if b.label == "Split this whole cluster").click().run()
    assert_clean(at)
    assert "Split cluster" in texts(at)
    assert len({lib.store.cluster_assignments()[i][0] for i in members[1:]}) >= 2


def test_regroup_keeps_names(open_app, ui_copy):
    lib = Library(ui_copy)
    cluster = lib.clusters()[0].id
    lib.name_cluster(cluster, "kept")
    named = set(lib.cluster_members(cluster))
    at = open_app(ui_copy)
    at.number_input(key="regroup:seed").set_value(3).run()
    next(b for b in at.button if b.label == "Re-group").click().run()
    assert_clean(at)
    assert lib.store.db.execute("SELECT COUNT(*) FROM clusterings").fetchone()[0] == 2
    assert {i for i, n in lib.store.labels().items() if n == "kept"} == named


def test_merge_from_the_grid(open_app, ui_copy):
    lib = Library(ui_copy)
    a, b = [c.id for c in lib.clusters() if c.id >= 0][:2]
    at = open_app(ui_copy)
    at.checkbox(key=f"merge-{a}").check().run()
    at.checkbox(key=f"merge-{b}").check().run()
    next(x for x in at.button if x.label.startswith("Merge the 2")).click().run()
    assert_clean(at)
    assert len({c.id for c in lib.clusters()} & {a, b}) == 1, "two clusters became one"


def test_train_page_trains_and_shows_metrics(open_app, ui_copy, name_clusters):
    name_clusters(ui_copy)
    at = open_app(ui_copy, "views/train.py")
    assert_clean(at)
    next(b for b in at.button if b.label == "Train classifier").click().run()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Accuracy"].rstrip("%")) >= 80
    assert "Macro-F1" in metrics
    assert Library(ui_copy).store.current_model() is not None
    assert Library(ui_copy).prediction_counts(), "training also predicts the library"


def test_review_accept_becomes_a_label(open_app, trained_copy):
    store = Library(trained_copy).store
    store.remove_labels(store.present_image_ids()[:5])  # a few unnamed images to ask about
    at = open_app(trained_copy, "views/review.py")
    assert_clean(at)
    ok = next(b for b in at.button if b.key and b.key.startswith("ok:"))
    image_id = ok.key.split(":", 1)[1]
    ok.click().run()
    assert_clean(at)
    row = Library(trained_copy).store.db.execute("SELECT name, source FROM labels WHERE image_id=?",
                                                 (image_id,)).fetchone()
    assert row and row["source"] == "accepted" and ok.label.endswith(row["name"])


def test_predictions_page_lists_and_filters(open_app, trained_store):
    at = open_app(trained_store, "views/predictions.py")
    assert_clean(at)
    label = at.selectbox(key="pred:label")
    assert label.value in Library(trained_store).current_model().classes + ["unknown"]
    at.slider(key="pred:floor").set_value(99).run()
    assert_clean(at)
    assert "confidence ≥ 99%" in texts(at)


def test_empty_store_indexes_a_folder_and_groups_it(open_app, tmp_path):
    import shutil
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "sample_data"
    folder = tmp_path / "photos"
    for cls in ("sunflower", "watch"):
        (folder / cls).mkdir(parents=True)
        for src in sorted((sample / cls).glob("*.jpg"))[:6]:
            shutil.copy2(src, folder / cls / src.name)
    (folder / "watch" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    before = sorted(p.name for p in folder.rglob("*"))
    at = open_app(tmp_path / "store")
    at.text_input[0].input(str(folder))
    at.selectbox[0].set_value("efficientnet-lite0")
    next(b for b in at.button if b.label == "Index and group").click().run(timeout=180)
    assert_clean(at)
    assert at.title[0].value == "Clusters", "indexing ends on the Clusters page"
    store = Library(tmp_path / "store").store
    assert store.counts()["images"] == 12 and store.current_clustering_id() is not None
    assert sorted(p.name for p in folder.rglob("*")) == before, "nothing is written to the image folder"
    at.switch_page("views/library.py").run()
    assert_clean(at)
    failed = at.dataframe[-1].value
    assert list(failed["file"]) == ["watch/broken.jpg"] and "corrupt" in failed["error"][0]


def test_reindex_from_the_library_page(open_app, ui_copy):
    at = open_app(ui_copy, "views/library.py")
    next(b for b in at.button if b.label.startswith("Re-index")).click().run(timeout=120)
    assert_clean(at)
    assert "160 unchanged" in texts(at)


def test_search_by_a_library_image(open_app, ui_store):
    at = open_app(ui_store, "views/search.py")
    at.radio(key="search:mode").set_value("An image of the library").run()
    at.text_input(key="search:find").input("sunflower/image_0001").run()
    assert_clean(at)
    scores = [c.value for c in at.caption if c.value.startswith("score")]
    assert len(scores) == 24
    assert sum(bool(c.key and c.key.startswith("cb:search:")) for c in at.checkbox) == 24, "results are selectable"
