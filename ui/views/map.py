"""Map: every image as a dot (UMAP to 2-D, cached in the store); box-select some and name them."""
from __future__ import annotations

import base64

import altair as alt
import pandas as pd
import streamlit as st

import common
from organizer import curation

lib = common.library()
store = lib.store
HOVER_THUMBS = 3000  # above this, tooltips carry no picture (the chart data would get too heavy)


def name_selection(ids: list[str]) -> None:
    name = common.picked_name("map:label")
    if common.act(curation.move_to_label, store, ids, name) is not None:
        common.say(f"Named {len(ids)} images “{name}”.")


st.title("Map")
common.show_messages()
if store.counts()["images"] < 2:
    st.info("The map needs at least two indexed images.")
    st.stop()

coords = curation.map_coords(store, compute=False)
if coords is None:
    with st.spinner("Laying out the map (once; it is cached until the images change)..."):
        coords = curation.map_coords(store)
ids, xy = coords

st.session_state.setdefault("map:color", "name" if store.counts()["labeled"] else "cluster")
color_by = st.radio("Color by", ["cluster", "name", "prediction"], horizontal=True, key="map:color")
rows = curation.map_points(lib, ids, xy)
thumbs = curation.thumbnails(store, ids) if len(ids) <= HOVER_THUMBS else {}
for row in rows:
    if row["id"] in thumbs:
        row["image"] = "data:image/webp;base64," + base64.b64encode(thumbs[row["id"]]).decode()

box = alt.selection_interval(name="box", encodings=["x", "y"])
tooltip = [f"{f}:N" for f in ["path", "cluster", "name", "prediction"] + (["image"] if thumbs else [])]
# A DataFrame goes to the browser as Arrow, which stays fast at 10k+ dots.
chart = (alt.Chart(pd.DataFrame(rows)).mark_circle(size=60, opacity=0.8)
         .encode(x=alt.X("x:Q", axis=None), y=alt.Y("y:Q", axis=None),
                 color=alt.Color(f"{color_by}:N", legend=alt.Legend(title=color_by)),
                 tooltip=tooltip)
         .add_params(box).properties(height=560))
st.caption("Hover a dot to see the image. Drag a box around dots to select them, then name them below.")
event = st.altair_chart(chart, on_select="rerun", key="map-chart", width="stretch")

bounds = (event.selection.get("box") or {}) if event else {}
if bounds.get("x") and bounds.get("y"):
    (x0, x1), (y0, y1) = sorted(bounds["x"]), sorted(bounds["y"])
    chosen = [r["id"] for r in rows if x0 <= r["x"] <= x1 and y0 <= r["y"] <= y1]
    st.subheader(f"{len(chosen)} images selected")
    if chosen:
        with st.container(border=True):
            common.label_picker("map:label", "Name them")
            st.button(f"Name the {len(chosen)} selected images", type="primary", on_click=name_selection,
                      args=(chosen,))
        common.grid(chosen[:24], name="map")
        if len(chosen) > 24:
            st.caption(f"showing 24 of {len(chosen)}")
