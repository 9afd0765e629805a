"""Train: fit the classifier on the named images; cross-validated metrics, a clickable
confusion matrix (a cell shows the images behind it), model versions (make one current) and
labels that look wrong."""
from __future__ import annotations

import datetime

import altair as alt
import streamlit as st

from organizer.app import common
from organizer.app import explain_view

lib = common.library()


def train() -> None:
    with st.spinner("Training and predicting every image..."):
        m = common.act(lib.train)
    if m:
        acc = f", cross-validated accuracy {m['accuracy']:.1%}" if "accuracy" in m else ""
        kept = "" if m.get("current", True) else f" Not made current: {m['decision']}."
        common.say(f"Trained model {m['model_id']} on {m['n_train']} images{acc}.{kept} Every image now has a prediction.")
        st.session_state.pop("train:cell", None)


st.title("Train")
common.show_messages()
names = lib.label_names()
if len(names) < 2:
    st.info("Training needs at least two names. Name some groups on the Clusters page first "
            f"(names so far: {', '.join(n for n, _ in names) or 'none'}).")
    st.page_link("views/clusters.py", label="Go to Clusters", icon=":material/category:")
    st.stop()

n_named = sum(k for _, k in names)
st.markdown(f"**{n_named} named images** in **{len(names)} classes**: "
            + ", ".join(f"{n} ({k})" for n, k in names))
since = lib.answers_since_training()
model = lib.current_model()
metrics = None if model is None else {**model.metrics, "model_id": model.id, "classes": model.classes,
                                      "created_at": model.created}
label = "Train classifier" if metrics is None else (
    f"Retrain with {since} new answers" if since else "Retrain classifier")
st.button(label, type="primary", on_click=train)

if metrics is None:
    st.stop()

trained = datetime.datetime.fromtimestamp(metrics["created_at"]).strftime("%Y-%m-%d %H:%M")
st.subheader(f"Model {metrics['model_id']} · trained {trained} on {metrics['n_train']} images")
if "accuracy" not in metrics:
    st.warning(metrics.get("note", "No cross-validated metrics for this model."))
    st.stop()
cal = metrics.get("calibration", {})
a, b, c, d = st.columns(4)
a.metric("Accuracy", f"{metrics['accuracy']:.1%}", help="On images the model did not train on (k-fold)")
b.metric("Macro-F1", f"{metrics['macro_f1']:.3f}")
c.metric("Folds", metrics.get("folds", "—"))
d.metric("'unknown' below", f"{metrics['threshold']:.0%}", help="Predictions less confident than this say unknown")
if "ece_after" in cal:
    st.caption(f"Confidence is calibrated (temperature {cal['temperature']:.2f}): expected calibration error on "
               f"held-out images {cal['ece_before']:.3f} before, {cal['ece_after']:.3f} after.")
with st.container(horizontal=True):
    st.page_link("views/review.py", label="Next: review the uncertain images", icon=":material/fact_check:")
    st.page_link("views/predictions.py", label="Browse predictions and export", icon=":material/label:")

classes = metrics["classes"]
left, right = st.columns([2, 3])
with left:
    st.markdown("**Per class**")
    st.dataframe([{"class": k, "precision": round(v["precision"], 3), "recall": round(v["recall"], 3),
                   "images": v["support"]} for k, v in metrics["per_class"].items()], hide_index=True)
with right:
    st.markdown("**Confusion matrix** (rows: given name, columns: predicted). Click a cell to see its images.")
    cells = [{"given": g, "predicted": p, "images": int(metrics["confusion"][i][j])}
             for i, g in enumerate(classes) for j, p in enumerate(classes)]
    pick = alt.selection_point(name="cell", fields=["given", "predicted"])
    base = alt.Chart(alt.Data(values=cells)).encode(
        x=alt.X("predicted:N", sort=classes, title="predicted", axis=alt.Axis(labelAngle=-35, labelLimit=140)),
        y=alt.Y("given:N", sort=classes, title="given", axis=alt.Axis(labelOverlap=False, labelLimit=140)))
    heat = base.mark_rect().encode(
        color=alt.Color("images:Q", scale=alt.Scale(scheme="blues"), legend=None),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.6)),
        tooltip=["given:N", "predicted:N", "images:Q"]).add_params(pick)
    text = base.mark_text().encode(text="images:Q", color=alt.condition("datum.images > 0", alt.value("black"),
                                                                           alt.value("#bbb")))
    rows = max(240, 34 * len(classes))
    event = st.altair_chart((heat + text).properties(height=rows), on_select="rerun", key="confusion",
                            width="stretch", height=rows + 140)  # room for the slanted class names

points = ((event or {}).get("selection") or {}).get("cell") or []
if points:
    given, predicted = points[0].get("given"), points[0].get("predicted")
    try:
        ids = lib.confusion_images(metrics["model_id"], given, predicted)
    except Exception as e:  # StoreError, or a model whose files were removed
        st.warning(str(e))
        ids = []
    st.subheader(f"Named “{given}”, predicted “{predicted}”: {len(ids)} images")
    shown = ids[common.pager(len(ids), "cell")] if ids else []
    if given != predicted and shown:  # the wrong ones: where the current model sees “predicted”
        st.caption(f"Heatmaps: where the current model finds “{predicted}” in each image.")
        explain_view.grid(shown, label=predicted if predicted in classes else None)
    else:
        common.grid(shown, name="cell")


def make_current(model_id: int) -> None:
    if common.act(lib.use_model, model_id) is not None:
        common.say(f"Model {model_id} is current; predictions follow it.")


versions = lib.models()
if len(versions) > 1:
    with st.expander(f"Model versions ({len(versions)})"):
        st.caption("A new model becomes current only if it is not worse on the same labels (or adds a class).")
        for v in reversed(versions[-12:]):
            cols = st.columns([1, 2, 2, 2, 4, 2], vertical_alignment="center")
            cols[0].markdown(f"**{v.id}**")
            cols[1].write(f"{v.n_labels} labels, {len(v.classes)} classes")
            cols[2].write("accuracy " + (f"{v.accuracy:.1%}" if v.accuracy is not None else "—"))
            cols[3].write("macro-F1 " + (f"{v.macro_f1:.3f}" if v.macro_f1 is not None else "—"))
            cols[4].caption(v.decision)
            if v.current:
                cols[5].markdown("✓ current")
            else:
                cols[5].button("Make current", key=f"use:{v.id}", on_click=make_current, args=(v.id,))

with st.expander("Labels that look wrong"):
    issues = common.derived("label_issues", 24)
    if not issues:
        st.write("No suspicious labels.")
    else:
        st.caption("Most suspicious first: a whole cluster under a wrong name shows up as a group here. "
                   "Fix names on the Clusters page or by labeling the images.")
        common.grid([r.image_id for r in issues], name="issues",
                    captions={r.image_id: f"{r.label} → {r.suggested}?" for r in issues})
