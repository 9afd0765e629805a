"""Bad input in the app: query parameters that are not ids are refused; a non-image upload or
folder gives a message, never a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest

from organizer.library import Library

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def assert_clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def errors(at) -> str:
    return "\n".join(e.value for e in at.error)


@pytest.mark.parametrize("value", ["../../etc/passwd", "..", "/etc/passwd", "a" * 32, "x", "%2e%2e%2f"])
def test_image_parameter_must_be_a_known_id(open_app, ui_store, value):
    at = open_app(ui_store, params={"image": value})
    assert not at.exception
    assert "Refused the image parameter" in errors(at)
    assert not any(i.key == "close-image" for i in at.button), "nothing is shown for a refused id"


def test_image_parameter_with_a_real_id_shows_it(open_app, ui_store):
    lib = Library(ui_store)
    image_id = lib.store.present_image_ids()[0]
    at = open_app(ui_store, params={"image": image_id})
    assert_clean(at)
    path = lib.store.primary_paths([image_id])[image_id]
    assert any(path in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Find similar images").click().run()
    assert_clean(at)
    assert at.title[0].value == "Search" and "image" not in at.query_params
    assert sum(c.value.startswith("score") for c in at.caption) == 24


@pytest.mark.parametrize("value", ["../1", "999", "one"])
def test_cluster_parameter_is_checked(open_app, ui_store, value):
    at = open_app(ui_store, params={"cluster": value})
    assert not at.exception
    assert "Refused the cluster parameter" in errors(at)
    assert at.title[0].value == "Clusters"


def _upload(open_app, store, name, data, mime):
    at = open_app(store, "views/search.py")
    at.radio(key="search:mode").set_value("Upload an image").run()
    at.file_uploader[0].upload(name, data, mime)
    return at.run()


def test_uploading_a_non_image_gives_a_message(open_app, ui_store):
    at = _upload(open_app, ui_store, "notes.jpg", b"this is not a picture", "image/jpeg")
    assert not at.exception
    assert "notes.jpg" in errors(at)


def test_uploading_an_image_finds_similar(open_app, ui_store):
    data = (SAMPLE / "watch" / "image_0002.jpg").read_bytes()
    at = _upload(open_app, ui_store, "w.jpg", data, "image/jpeg")
    assert_clean(at)
    assert sum(c.value.startswith("score") for c in at.caption) >= 6


def test_indexing_a_missing_folder_is_a_message(open_app, tmp_path):
    at = open_app(tmp_path / "store")
    at.text_input[0].input(str(tmp_path / "nowhere"))
    next(b for b in at.button if b.label == "Index and group").click().run()
    assert not at.exception
    assert "folder not found" in errors(at)
