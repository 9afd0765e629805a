"""Shared pieces of the app: the cached Library, thumbnail grids with selection, messages.

Pages stay thin: they lay out widgets and call `Library`, the one API."""
from __future__ import annotations

import os
import sqlite3
import sys
import threading
from pathlib import Path

import streamlit as st

from organizer.library import Library, StoreError, default_store_dir

GRID_COLUMNS = 6
PAGE_SIZE = 48


def store_dir() -> str:
    """--store after `--` (how `organizer ui` starts us), else $ORGANIZER_STORE, else the default."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--store" and i + 1 < len(argv):
            return str(Path(argv[i + 1]).expanduser().resolve())
        if arg.startswith("--store="):
            return str(Path(arg.split("=", 1)[1]).expanduser().resolve())
    env = os.environ.get("ORGANIZER_STORE")
    return str(Path(env).expanduser().resolve() if env else default_store_dir())


@st.cache_resource(show_spinner=False)
def _open(path: str) -> Library:
    return Library(path, create=True)


def library() -> Library:
    """One Library per store for the whole server: pages and reruns share it (and its models)."""
    return _open(store_dir())


@st.cache_resource(show_spinner=False)
def run_lock():
    """Sessions share one SQLite connection; one script run at a time keeps transactions apart."""
    return threading.RLock()


@st.cache_resource(show_spinner="Loading the image model...")
def _embedder(path: str, backbone: str):
    return _open(path).embedder()


def embedder():
    lib = library()
    return _embedder(store_dir(), lib.backbone or "")


@st.cache_data(show_spinner=False, max_entries=16)
def _derived(path: str, version: tuple, what: str, n: int):
    return getattr(_open(path), what)(n)


def derived(what: str, n: int):
    """`Library.<what>(n)` (review, label_issues), computed once per state of the store: on a large
    library they take seconds, and every click reruns the page."""
    with run_lock():
        return _derived(store_dir(), library().version(), what, n)


# -- messages that survive the rerun a button causes, shown next to the action ------------------
def new_run() -> None:
    """app.py calls this once per run: messages from before the last run are overdue."""
    st.session_state["_run"] = st.session_state.get("_run", 0) + 1


def say(message: str, kind: str = "success", at: str = "top") -> None:
    """Queue a message for the place `at` (a card, a form); show_messages(at) shows it there."""
    st.session_state.setdefault("_messages", []).append((kind, message, at, st.session_state.get("_run", 0)))


def show_messages(at: str = "top") -> None:
    """Messages for `at`; at the top also any whose place was not drawn in the run they were meant
    for (the card closed, the item left the queue), so no message is ever silently lost."""
    run = st.session_state.get("_run", 0)
    keep = []
    for kind, message, where, made in st.session_state.get("_messages", []):
        if where == at or (at == "top" and made < run - 1):
            getattr(st, kind)(message)
        else:
            keep.append((kind, message, where, made))
    st.session_state["_messages"] = keep


def act(fn, *args, done: str | None = None, at: str = "top", **kwargs):
    """Run an action from a callback; a StoreError becomes a message next to it, never a traceback."""
    try:
        with run_lock():  # callbacks run before the script body, outside app.py's lock
            result = fn(*args, **kwargs)
    except StoreError as e:
        say(str(e), "error", at)
        return None
    except (sqlite3.Error, OSError) as e:  # the store refused (read-only, closed, disk full): say so
        store_failed(e, at)
        return None
    if done:
        say(done.format(result=result), at=at)
    return result


def store_failed(error: Exception, at: str = "top") -> None:
    """A store that could not be read or written: a message, and a fresh connection next run."""
    say(f"The store {store_dir()} refused the operation ({error}); nothing was changed. "
        "Check that the folder is writable and has free space, then try again.", "error", at)
    _open.clear()


# -- selections kept across reruns and pages of a grid -------------------------------------------
def selection(key: str) -> set[str]:
    return st.session_state.setdefault(f"sel:{key}", set())


def clear_selection(key: str) -> None:
    st.session_state[f"sel:{key}"] = set()
    for k in [k for k in st.session_state if isinstance(k, str) and k.startswith(f"cb:{key}:")]:
        del st.session_state[k]


def _toggle(key: str, image_id: str) -> None:
    chosen = selection(key)
    if st.session_state.get(f"cb:{key}:{image_id}"):
        chosen.add(image_id)
    else:
        chosen.discard(image_id)


def select_all(key: str, ids: list[str]) -> None:
    selection(key).update(ids)
    for i in ids:
        st.session_state[f"cb:{key}:{i}"] = True


def pager(n: int, key: str, per_page: int = PAGE_SIZE) -> slice:
    pages = max(1, -(-n // per_page))
    if pages == 1:
        return slice(0, n)
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key=f"page:{key}")
    start = (int(page) - 1) * per_page
    return slice(start, min(n, start + per_page))


def grid(ids: list[str], *, key: str | None = None, captions: dict[str, str] | None = None,
         columns: int = GRID_COLUMNS, name: str | None = None) -> None:
    """Thumbnails by id (never the originals), with a checkbox under each when `key` is given.

    `name` tells two grids of one page apart (without it a second unkeyed grid would reuse
    the first one's element key and Streamlit refuses the page)."""
    thumbs = library().thumbnails(ids)
    chosen = selection(key) if key else set()
    box = st.container(key=f"grid-{name or key or 'plain'}")  # the key lets app.py's CSS crop these to squares
    for row in range(0, len(ids), columns):
        cols = box.columns(columns)
        for col, image_id in zip(cols, ids[row:row + columns]):
            with col:
                if image_id in thumbs:
                    st.image(thumbs[image_id], width="stretch")
                else:
                    st.caption("(no preview)")
                if captions and image_id in captions:
                    st.caption(captions[image_id])
                if key:
                    ck = f"cb:{key}:{image_id}"
                    if ck not in st.session_state:
                        st.session_state[ck] = image_id in chosen
                    st.checkbox("select", key=ck, on_change=_toggle, args=(key, image_id),
                                label_visibility="collapsed")


def label_picker(key: str, label: str = "Name") -> None:
    """One box: pick a name already in use or type a new one (read it with `picked_name`)."""
    names = [n for n, _ in library().label_names()]
    st.selectbox(label, names, index=None, key=f"{key}:name", accept_new_options=True,
                 placeholder="choose a name or type a new one")


def picked_name(key: str) -> str:
    """What `label_picker(key)` holds, read from a callback."""
    return st.session_state.get(f"{key}:name") or ""


# -- numbers as a person reads them ------------------------------------------------------------------
def confidence_text(confidence: float) -> str:
    """A confidence never rounded up to a certainty it is not (0.997 reads "99.7%", not "100%")."""
    import math

    if confidence < 0.995:
        return f"{confidence:.0%}"
    return f"{math.floor(confidence * 1000) / 10:.1f}%" if confidence < 0.9995 else ">99.9%"


def percent_floor(percent: float) -> float:
    """The confidence a whole-percent floor means: everything shown as at least `percent`% when
    rounded to a whole percent (0.996 reads "100%", so "≥ 100%" must find it)."""
    return max(0.0, (float(percent) - 0.5) / 100.0)

