"""Library: what the store holds, files that failed, (re-)indexing with progress."""
from __future__ import annotations

import datetime
import json

import streamlit as st

from organizer.app import common
from organizer.library import BackboneError
from organizer.library import StoreError

lib = common.library()


def run_index(folder: str, backbone: str = "auto") -> bool:
    """Index with a progress bar, then group: one step from a folder to named-able clusters."""
    bar = st.progress(0.0, text="Looking for images...")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Embedding images: {done} of {total}")

    try:
        report = lib.index(folder, backbone=backbone, progress=progress)
    except (StoreError, BackboneError) as e:
        bar.empty()
        st.error(str(e))
        return False
    bar.progress(1.0, text=report.summary())
    if report.embedded or not lib.has_groups():
        if lib.counts()["images"] >= 2:
            with st.spinner("Grouping similar images..."):
                try:
                    result = lib.cluster()
                    common.say(f"{report.summary()}. Found {result.clusters} groups.")
                except StoreError as e:
                    common.say(str(e), "error")
    else:
        common.say(report.summary())
    return True


def when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


st.title("Library")
common.show_messages()
info = lib.overview()
status = info.status

if not status.images and not status.error:
    st.markdown("This store is empty. Give it a folder of images: organizer reads them (never writes there), "
                "makes a thumbnail and a vector for each, then groups similar ones.")
    with st.form("index-new"):
        folder = st.text_input("Folder of images on this computer", placeholder="/home/me/Pictures")
        backbone = st.selectbox("Image model", ["auto", "efficientnet-lite0", "clip"],
                                help="auto uses CLIP when its weights are available (adds text search), "
                                     "else the small offline efficientnet-lite0")
        go = st.form_submit_button("Index and group", type="primary")
    if go and not folder.strip():
        st.warning("Type the path of a folder of images first.")
    elif go and run_index(folder.strip(), backbone):
        st.switch_page("views/clusters.py")
    st.stop()

cols = st.columns(6)
cols[0].metric("Images", status.images)
cols[1].metric("Groups", info.n_clusters)
cols[2].metric("Named images", status.labeled)
cols[3].metric("Names", len(info.label_names))
cols[4].metric("Failed files", status.error)
cols[5].metric("Missing files", status.missing)
st.markdown(f"Folder: `{status.library}` · image model: `{status.backbone}` · store: `{status.store}`")

if st.button("Re-index (only new and changed files)", disabled=not status.library):
    if run_index(status.library):
        st.rerun()

if info.label_names:
    st.subheader("Names")
    st.dataframe([{"name": n, "images": k} for n, k in info.label_names], hide_index=True)

st.subheader("Last runs")
runs = [{"when": when(r["created_at"]), "run": f"grouping {r['id']}",
         "result": f"{r['n_clusters']} groups over {r['n_images']} images",
         "settings": json.dumps(r["params"])} for r in info.clusterings]
for m in info.models:
    runs.append({"when": when(m.created), "run": f"model {m.id}" + (" (current)" if m.current else ""),
                 "result": f"{m.n_labels} images, {len(m.classes)} classes"
                 + (f", accuracy {m.accuracy:.1%}" if m.accuracy is not None else ""), "settings": ""})
if runs:
    st.dataframe(sorted(runs, key=lambda r: r["when"], reverse=True), hide_index=True)
else:
    st.caption("No grouping or training yet.")

st.subheader(f"Files that could not be read ({len(info.errors)})")
if info.errors:
    st.dataframe([{"file": p, "error": e} for p, e in info.errors], hide_index=True)
else:
    st.caption("None: every file decoded.")
