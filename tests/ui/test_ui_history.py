"""Undo in the app: the sidebar lists the last changes; Undo reverts one (and any later ones)."""
from __future__ import annotations
from organizer.library import Library


def assert_clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_undo_a_naming_from_the_sidebar(open_app, ui_copy):
    at = open_app(ui_copy)
    first = next(b for b in at.button if b.key and b.key.startswith("sug-"))
    first.click().run()
    assert_clean(at)
    lib = Library(ui_copy)
    assert lib.store.labels()
    entry = lib.history(1)[0]
    assert entry.kind == "name" and any(c.value == entry.summary for c in at.sidebar.caption)
    at.sidebar.button(key=f"undo-{entry.id}").click().run()
    assert_clean(at)
    assert not lib.store.labels()
    assert any("Undid 1 change" in i.value for i in at.sidebar.info)


def test_a_model_switch_is_undone_and_predictions_follow(trained_copy):
    lib = Library(trained_copy)
    first = lib.store.current_model()["id"]
    second = lib.train(force=True)["model_id"]
    assert lib.store.current_model()["id"] == second
    lib.use_model(first)
    assert lib.history(1)[0].kind == "model"
    lib.undo()
    assert lib.store.current_model()["id"] == second
    assert {r[0] for r in lib.store.db.execute("SELECT DISTINCT model_id FROM predictions")} == {second}
