"""Review: the images the model is least sure of; accept its guess or correct it in one click.
Every answer becomes a label that the next training uses."""
from __future__ import annotations

import streamlit as st

from organizer.app import common
from organizer.app import explain_view
from organizer import curation

lib = common.library()
store = lib.store
BATCH = 12


def answer(image_id: str, name: str, guess: str) -> None:
    if common.act(curation.accept, store, [image_id], name, guess, at="review") is not None:
        what = f"Confirmed “{name}”." if name == guess else f"Corrected to “{name}” (the model said “{guess}”)."
        common.say(what + " It is a label for the next training; undo it in Last changes (left).", at="review")


def retrain() -> None:
    with st.spinner("Training..."):
        m = common.act(curation.train_and_predict, lib)
    if m:
        common.say(f"Retrained (model {m['model_id']})"
                   + (f": accuracy {m['accuracy']:.1%}." if "accuracy" in m else "."))


st.title("Review")
common.show_messages()
classes = curation.model_classes(store)
if not classes:
    st.info("No model yet: name some groups, then train.")
    st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

since = curation.answers_since_training(store)
left, right = st.columns([3, 1], vertical_alignment="center")
left.markdown("Images no one has checked that teach the model most: uncertain, in crowded parts of the "
              "collection, spread out, rare classes first. Click the right name: "
              "✓ accepts the guess, any other button corrects it.")
right.button(f"Retrain with {since} new answers" if since else "Retrain", type="primary" if since else "secondary",
             on_click=retrain)

common.show_messages("review")
queue = curation.review_queue(lib, BATCH)
if not queue:
    st.success("Nothing left to review: every predicted image has a name.")
    st.stop()
if min(r["confidence"] for r in queue) >= 0.95:
    st.info("The model is sure of all of these, even judged by the folds that never trained on them: "
            "nothing here is in doubt, so answering is a spot check.")
thumbs = curation.thumbnails(store, [r["image_id"] for r in queue])
heat = explain_view.toggle("review")
cols = st.columns(4)
for k, row in enumerate(queue):
    with cols[k % 4].container(border=True):
        explain_view.image(row["image_id"], thumbs.get(row["image_id"]), heat, row["best"])
        st.markdown(f"Model says **{row['best']}** ({curation.confidence_text(row['confidence'])})")
        if row.get("runner_up") or row.get("label"):  # why it is asked: a close second, or a cluster name to confirm
            st.caption(" · ".join(x for x in (f"or {row['runner_up']}?" if row.get("runner_up") else "",
                                              f"group named {row['label']}" if row.get("label") else "") if x))
        st.button(f"✓ {row['best']}", key=f"ok:{row['image_id']}", type="primary",
                  on_click=answer, args=(row["image_id"], row["best"], row["best"]))
        with st.container(horizontal=True, gap="small"):
            for name in classes:
                if name != row["best"]:
                    st.button(name, key=f"fix:{row['image_id']}:{name}", on_click=answer,
                              args=(row["image_id"], name, row["best"]))
