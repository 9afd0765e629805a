"""One API: the same actions through the CLI and through `Library` (all the app's pages call) leave
identical stores: names, groups, models, predictions and history. A rule living in only one front
door (naming, re-predicting after a model change, what a review answer records) shows up here."""
from __future__ import annotations

import shutil

from organizer.library import Library
from support import run_cli


def _dump(store) -> dict:
    lib = Library(store, create=False)
    db = lib.store.db

    def rows(sql, *args):
        return sorted(tuple(r) for r in db.execute(sql, args))

    cid = lib.store.current_clustering_id()
    try:
        return {
            "labels": rows("SELECT image_id, name, source FROM labels"),
            "groups": rows("SELECT image_id, cluster FROM cluster_members WHERE clustering_id=?", cid),
            "suggestions": rows("SELECT cluster, names FROM cluster_suggestions WHERE clustering_id=?", cid),
            "models": [(m.id, m.classes, m.n_labels, m.n_person, m.current) for m in lib.models()],
            "predictions": [(i, label, best, round(conf, 3)) for i, label, best, conf in
                            rows("SELECT image_id, label, best, confidence FROM predictions")],
            "history": [(h.kind, h.summary, h.undone_at is None) for h in lib.history(None)],
        }
    finally:
        lib.close()


def _plan(store):
    """The clusters and images the walk-through acts on, read the same way for both copies."""
    lib = Library(store, create=False)
    try:
        groups = [c for c in lib.clusters(samples=0) if c.id >= 0 and c.size >= 6]
        a, b, c, d = (g.id for g in groups[:4])
        paths = lib.paths()
        moved = [paths[i] for i in lib.cluster_members(c)[:2]]
        hand = [paths[i] for i in lib.cluster_members(d)[:2]]
        return a, b, c, d, moved, hand
    finally:
        lib.close()


def test_cli_and_app_api_leave_identical_stores(sample_store, tmp_path):
    cli_store, app_store = tmp_path / "cli", tmp_path / "app"
    shutil.copytree(sample_store, cli_store)
    shutil.copytree(sample_store, app_store)
    a, b, c, d, moved, hand = _plan(cli_store)
    assert _plan(app_store) == (a, b, c, d, moved, hand)

    def cli(*args):
        return run_cli(*args, "--store", cli_store).stdout

    cli("name", a, "alpha")
    cli("name", b, "beta")
    cli("move", *moved, "--to", a)
    cli("merge", c, d)
    cli("split", b)
    cli("label", *hand, "--as", "gamma")
    cli("train")
    review = Library(cli_store).review(1)
    cli("answer", review[0].path, "--as", review[0].predicted)
    cli("train", "--force")
    cli("models", "--use", "1")

    lib = Library(app_store)
    lib.name_cluster(a, "alpha")
    lib.name_cluster(b, "beta")
    lib.move_to_cluster(lib.resolve_paths(moved), a)
    lib.merge_clusters([c, d])
    lib.split_cluster(b)
    lib.label_ids(lib.resolve_paths(hand), "gamma")
    lib.train()
    item = lib.review(1)[0]
    assert (item.image_id, item.predicted) == (review[0].image_id, review[0].predicted)
    lib.answer([item.image_id], item.predicted)
    lib.train(force=True)
    lib.use_model(1)
    lib.close()

    cli_dump, app_dump = _dump(cli_store), _dump(app_store)
    assert cli_dump["models"][-1][0] == 2 and cli_dump["models"][0][-1], "model 1 is current again"
    assert cli_dump["predictions"], "predictions follow the current model on both doors"
    for part in cli_dump:
        assert cli_dump[part] == app_dump[part], part
