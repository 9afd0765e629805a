"""Search by text (CLIP), by an uploaded image, or by an image of the library; name the results."""
from __future__ import annotations

import streamlit as st

from organizer.app import common
from organizer.library import BackboneError
from organizer.library import StoreError

lib = common.library()
KEY = "search"
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "heic", "heif", "avif"]


def name_selected() -> None:
    ids = sorted(common.selection(KEY))
    if not ids:
        return common.say("Select results first.", "warning")
    name = common.picked_name(f"{KEY}:label")
    if common.act(lib.label_ids, ids, name) is not None:
        common.say(f"Named {len(ids)} images “{name}”.")
        common.clear_selection(KEY)


st.title("Search")
common.show_messages()
if lib.counts()["images"] == 0:
    st.info("Nothing to search yet: index a folder first.")
    st.stop()

has_text = bool(lib.backbone and lib.backbone.startswith("clip"))
modes = ["Text", "Upload an image", "An image of the library"]
st.session_state.setdefault("search:mode", modes[0] if has_text else modes[1])
mode = st.radio("Search by", modes, horizontal=True, key="search:mode")
k = st.slider("Results", 6, 96, 24, step=6)
hits: list[tuple[str, float]] = []
try:
    if mode == "Text":
        if not has_text:
            st.info(f"Text search needs a CLIP image model; this library uses {lib.backbone}. "
                    "Search with an image instead.")
        else:
            text = st.text_input("Describe what you look for", placeholder="a dog on a beach")
            if text.strip():
                common.embedder()  # loaded once per server, shared by every page
                hits = lib.search_text(text.strip(), k)
    elif mode == "Upload an image":
        upload = st.file_uploader("An image (it is not added to the library)", type=UPLOAD_TYPES)
        if upload is not None:
            common.embedder()
            hits = lib.similar_to_bytes(upload.getvalue(), k, name=upload.name)
    else:
        fragment = st.text_input("Find a library image by part of its file name", key="search:find")
        found = lib.find_paths(fragment.strip(), 200) if fragment.strip() else []
        options = [i for i, _ in found]
        chosen = st.session_state.get("search:like")
        if chosen and chosen not in options:
            options.insert(0, chosen)
        names = dict(found) | lib.paths([o for o in options if o not in dict(found)])
        if options:
            target = st.selectbox("Image", options, format_func=lambda i: names.get(i, i), key="search:like")
            thumb = lib.thumbnails([target]).get(target)
            if thumb:
                st.image(thumb, width=160)
            hits = lib.similar_to_id(target, k)
        elif fragment.strip():
            st.caption("No library file matches.")
except (StoreError, BackboneError) as e:
    st.error(str(e))

if hits:
    chosen = common.selection(KEY)
    with st.container(border=True):
        st.markdown(f"**{len(chosen & {i for _, i, _ in hits})} selected**")
        common.label_picker(f"{KEY}:label", "Give the selected a name")
        st.button("Name selected", type="primary", on_click=name_selected)
    ids = [i for _, i, _ in hits]
    with st.container(horizontal=True):
        st.button("Select all", on_click=common.select_all, args=(KEY, ids))
        st.button("Clear selection", on_click=common.clear_selection, args=(KEY,))
    common.grid(ids, key=KEY, captions={i: f"score {s:.3f}" for _, i, s in hits})
