"""Review: the images the model is least sure of; accept its guess or correct it in one click.
Every answer becomes a label that the next training uses."""
from __future__ import annotations

import streamlit as st

from organizer.app import common
from organizer.app import explain_view

lib = common.library()
BATCH = 12


def answer(image_id: str, name: str, guess: str) -> None:
    if common.act(lib.answer, [image_id], name, at="review") is not None:
        what = f"Confirmed “{name}”." if name == guess else f"Corrected to “{name}” (the model said “{guess}”)."
        common.say(what + " It is a label for the next training; undo it in Last changes (left).", at="review")


def retrain() -> None:
    with st.spinner("Training..."):
        m = common.act(lib.train)
    if m:
        common.say(f"Retrained (model {m['model_id']})"
                   + (f": accuracy {m['accuracy']:.1%}." if "accuracy" in m else "."))


st.title("Review")
common.show_messages()
classes = lib.current_model().classes if lib.current_model() else []
if not classes:
    st.info("No model yet: name some groups, then train.")
    st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

since = lib.answers_since_training()
left, right = st.columns([3, 1], vertical_alignment="center")
left.markdown("Images no one has checked that teach the model most: uncertain, in crowded parts of the "
              "collection, spread out, rare classes first. Click the right name: "
              "✓ accepts the guess, any other button corrects it.")
right.button(f"Retrain with {since} new answers" if since else "Retrain", type="primary" if since else "secondary",
             on_click=retrain)

common.show_messages("review")
queue = common.derived("review", BATCH)
if not queue:
    st.success("Nothing left to review: a person has checked every image.")
    st.stop()
if min(r.confidence for r in queue) >= 0.95:
    st.info("The model is sure of all of these, even judged by the folds that never trained on them: "
            "nothing here is in doubt, so answering is a spot check.")
thumbs = lib.thumbnails([r.image_id for r in queue])
heat = explain_view.toggle("review")
cols = st.columns(4)
for k, row in enumerate(queue):
    with cols[k % 4].container(border=True):
        explain_view.image(row.image_id, thumbs.get(row.image_id), heat, row.predicted)
        st.markdown(f"Model says **{row.predicted}** ({common.confidence_text(row.confidence)})")
        if row.runner_up or row.label:  # why it is asked: a close second, or a cluster name to confirm
            st.caption(" · ".join(x for x in (f"or {row.runner_up}?" if row.runner_up else "",
                                              f"group named {row.label}" if row.label else "") if x))
        st.button(f"✓ {row.predicted}", key=f"ok:{row.image_id}", type="primary",
                  on_click=answer, args=(row.image_id, row.predicted, row.predicted))
        with st.container(horizontal=True, gap="small"):
            for name in classes:
                if name != row.predicted:
                    st.button(name, key=f"fix:{row.image_id}:{name}", on_click=answer,
                              args=(row.image_id, name, row.predicted))
