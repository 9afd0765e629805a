"""The organizer app. Started by `organizer ui`:

    streamlit run organizer/app/app.py ... -- --store STORE

The store comes from --store after `--`, else $ORGANIZER_STORE, else the default store."""
from __future__ import annotations

import sqlite3

import streamlit as st

from organizer.app import common
from organizer.library import StoreError

st.set_page_config(page_title="organizer", page_icon=":material/photo_library:", layout="wide")
st.set_option("client.toolbarMode", "viewer")  # no "Deploy"/"Clear cache" for people organizing photos
# Thumbnails in cards are square crops, so rows line up whatever the photos' shapes.
st.html("<style>[class*='st-key-thumbs'] img {width: 92px; height: 92px; object-fit: cover; border-radius: 4px}"
        "[class*='st-key-grid'] img {aspect-ratio: 1; object-fit: cover; border-radius: 4px}</style>")

try:
    lib = common.library()
except (StoreError, OSError) as e:
    st.error(f"Cannot open the store {common.store_dir()}: {e}")
    st.stop()


def _close_image() -> None:
    st.query_params.pop("image", None)


def image_panel() -> None:
    """?image=ID shows one image; anything that is not a known id is refused."""
    value = st.query_params.get("image")
    if value is None:
        return
    try:
        info = lib.image_info(value)
    except StoreError as e:
        st.error(f"Refused the image parameter: {e}.")
        return
    with st.container(border=True):
        left, right = st.columns([1, 3])
        thumb = lib.thumbnails([info.id]).get(info.id)
        if thumb:
            left.image(thumb, width="stretch")
        right.markdown(f"**{info.path}**  \n{info.width}×{info.height} {info.format}  \n"
                       f"cluster: {info.cluster if info.cluster >= 0 else 'unsorted'}  \n"
                       f"name: {info.label or '—'}  \n"
                       f"predicted: {info.predicted or '—'}"
                       + (f" ({common.confidence_text(info.confidence)})" if info.confidence is not None else ""))
        with right.container(horizontal=True):
            if st.button("Find similar images", key="similar-image"):
                st.session_state["search:mode"] = "An image of the library"
                st.session_state["search:like"] = info.id
                _close_image()
                st.switch_page("views/search.py")
            st.button("Close", on_click=_close_image, key="close-image")


def _undo(entry_id: int) -> None:
    done = common.act(lib.undo, back_to=entry_id, at="history")
    if done:
        common.say(f"Undid {len(done)} change(s): " + "; ".join(e.summary for e in done) + ".", "info", "history")


def history_panel() -> None:
    """The last changes, on every page; undoing one undoes it and every later one, in order."""
    with st.sidebar:
        st.markdown("**Last changes**")
        common.show_messages("history")
        entries = lib.history(8)
        if not entries:
            st.caption("Nothing to undo yet. Every change you make (names, moves, merges, splits, "
                       "re-groups, review answers, model switches) appears here.")
        for k, e in enumerate(entries):
            left, right = st.columns([4, 1], vertical_alignment="center")
            left.caption(e.summary)
            later = f" and the {k} after it" if k else ""
            right.button("↶", key=f"undo-{e.id}", on_click=_undo, args=(e.id,),
                         help=f"Undo: {e.summary}{later}; `organizer undo` does the same")


def navigation():
    has_images = lib.counts()["images"] > 0  # an empty store opens on Library, to index a folder
    return st.navigation([
        st.Page("views/library.py", title="Library", icon=":material/photo_library:", default=not has_images),
        st.Page("views/clusters.py", title="Clusters", icon=":material/category:", default=has_images),
        st.Page("views/map.py", title="Map", icon=":material/scatter_plot:"),
        st.Page("views/search.py", title="Search", icon=":material/search:"),
        st.Page("views/train.py", title="Train", icon=":material/model_training:"),
        st.Page("views/review.py", title="Review", icon=":material/fact_check:"),
        st.Page("views/predictions.py", title="Predictions", icon=":material/label:"),
    ], position="top")


common.new_run()
with common.run_lock():
    page = navigation()
    if st.query_params.get("cluster") is not None:
        try:
            lib.check_cluster_id(st.query_params["cluster"])
        except StoreError as e:
            st.error(f"Refused the cluster parameter: {e}.")
            del st.query_params["cluster"]
    try:
        image_panel()
        history_panel()
        page.run()
    except (sqlite3.Error, OSError) as e:  # a store that cannot be read: a message, never a traceback
        common.store_failed(e)
        common.show_messages()
