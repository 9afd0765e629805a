"""Map: every image as a dot (UMAP to 2-D, cached in the store). Draw a lasso or a box around
dots, see their thumbnails, and name or tag them in one step."""
from __future__ import annotations

import numpy as np
import streamlit as st

from organizer.app import common
from organizer.app.mapselect import selected

lib = common.library()
DRAWN_MAX = 20_000   # dots drawn in the browser; beyond, a fixed sample is drawn, the selection stays exact
SHOWN = 24


def name_selection(ids: list[str]) -> None:
    name = common.picked_name("map:label")
    if common.act(lib.label_ids, ids, name, at="map") is not None:
        common.say(f"Named {len(ids)} images “{name}”.", at="map")


def tag_selection(ids: list[str]) -> None:
    tag = " ".join(str(st.session_state.get("map:tag", "")).split())
    if not tag:
        return common.say("Type a tag first.", "warning", "map")
    if common.act(lib.add_tags, ids, [tag], at="map") is not None:
        common.say(f"Tagged {len(ids)} images “{tag}”.", at="map")


def figure(rows: list[dict], drawn: np.ndarray, color_by: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    groups: dict[str, list[int]] = {}
    for k in drawn.tolist():
        groups.setdefault(rows[k][color_by], []).append(k)
    for value, members in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:60]:
        fig.add_trace(go.Scattergl(  # WebGL: tens of thousands of dots stay smooth
            x=[rows[k]["x"] for k in members], y=[rows[k]["y"] for k in members], mode="markers", name=value,
            marker={"size": 6 if len(drawn) < 5000 else 4, "opacity": 0.8},
            customdata=[[rows[k]["path"], rows[k]["name"], rows[k]["cluster"]] for k in members],
            hovertemplate="%{customdata[0]}<br>name: %{customdata[1]}<br>%{customdata[2]}<extra></extra>"))
    fig.update_layout(height=600, dragmode="lasso", margin={"l": 0, "r": 0, "t": 10, "b": 0},
                      xaxis={"visible": False}, yaxis={"visible": False}, legend={"itemsizing": "constant"})
    return fig


st.title("Map")
common.show_messages()
if lib.counts()["images"] < 2:
    st.info("The map needs at least two indexed images.")
    st.stop()

coords = lib.map_coords(compute=False)
if coords is None:
    with st.spinner("Laying out the map (once; it is cached until the images change)..."):
        coords = lib.map_coords()
ids, xy = coords

st.session_state.setdefault("map:color", "name" if lib.counts()["labeled"] else "cluster")
color_by = st.radio("Color by", ["cluster", "name", "prediction"], horizontal=True, key="map:color")
rows = lib.map_points(ids, xy)
drawn = np.arange(len(ids))
if len(ids) > DRAWN_MAX:
    drawn = np.sort(np.random.default_rng(0).choice(len(ids), DRAWN_MAX, replace=False))
    st.caption(f"Drawing {DRAWN_MAX:,} of {len(ids):,} dots (a fixed sample); a lasso or box selects every "
               "image inside it, drawn or not.")
try:
    fig = figure(rows, drawn, color_by)
except ImportError:
    st.error("The map needs plotly: `pip install 'organizer[app]'`.")
    st.stop()
st.caption("Hover a dot to see its file. Draw a lasso (or pick the box tool at the top right) around dots "
           "to select them, then name or tag them below. Double-click the map to clear the selection.")
event = st.plotly_chart(fig, on_select="rerun", selection_mode=("lasso", "box"), key="map-chart",
                        width="stretch", config={"displaylogo": False})

shapes = ((event or {}).get("selection") or {})
mask = selected(xy, shapes)
if not mask.any() and shapes.get("points"):  # a click on dots, without a shape: take the dots themselves
    picked = {p["customdata"][0] for p in shapes["points"] if p.get("customdata")}
    mask = np.array([r["path"] in picked for r in rows], bool)
chosen = [ids[k] for k in np.nonzero(mask)[0]]
common.show_messages("map")
if chosen:
    st.subheader(f"{len(chosen)} images selected")
    with st.container(border=True):
        left, right = st.columns(2, vertical_alignment="bottom")
        with left:
            common.label_picker("map:label", "Name them")
            st.button(f"Name the {len(chosen)} selected images", type="primary", on_click=name_selection,
                      args=(chosen,))
        with right:
            st.text_input("Or tag them (an image can carry many tags)", key="map:tag", max_chars=200)
            st.button(f"Tag the {len(chosen)} selected images", on_click=tag_selection, args=(chosen,))
    common.grid(chosen[:SHOWN], name="map")
    if len(chosen) > SHOWN:
        st.caption(f"showing {SHOWN} of {len(chosen)}")
