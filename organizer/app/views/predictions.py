"""Predictions: browse the library by predicted label and confidence; export CSV or JSON."""
from __future__ import annotations

import streamlit as st

from organizer.app import common
from organizer.app import explain_view

lib = common.library()


def predict() -> None:
    with st.spinner("Predicting..."):
        n = common.act(lib.predict)
    if n is not None:
        common.say(f"Predicted {n} images.")


st.title("Predictions")
common.show_messages()
if lib.current_model() is None:
    st.info("No model yet: name some groups, then train.")
    st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

counts = lib.prediction_counts()
if not counts:
    st.button("Predict every image", type="primary", on_click=predict)
    st.stop()

st.markdown(" · ".join(f"**{name}** {n}" for name, n in counts))
left, right = st.columns([2, 3])
label = left.selectbox("Predicted label", [n for n, _ in counts],
                       format_func=lambda n: f"{n} ({dict(counts)[n]})", key="pred:label")
# whole percents, as the captions show them: "≥ 100%" finds every image captioned 100%
floor = right.slider("Confidence at least", 0, 100, 0, 5, key="pred:floor", format="%d%%")
rows = lib.predictions(label, common.percent_floor(floor))
labels = lib.labels()
st.markdown(f"**{len(rows)} images** predicted “{label}” with confidence ≥ {floor}%")
captions = {r.image_id: f"{r.confidence:.0%}" + (f" · named {labels[r.image_id]}"
                                                               if r.image_id in labels else "") for r in rows}
ids = [r.image_id for r in rows]
shown = ids[common.pager(len(ids), f"pred:{label}")]
if explain_view.toggle("pred"):
    explain_view.grid(shown, captions=captions)
else:
    common.grid(shown, captions=captions, name="pred")

st.subheader("Export")
st.caption("One row per file: path, cluster, name, prediction, confidence.")
with st.container(horizontal=True):  # callables: the export is built only when clicked
    st.download_button("Download CSV", lambda: lib.export_bytes("csv"), "organizer-export.csv", "text/csv")
    st.download_button("Download JSON", lambda: lib.export_bytes("json"), "organizer-export.json",
                       "application/json")
