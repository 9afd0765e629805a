"""Clusters: name groups with one click, fix them (move, drop, merge, split), re-group."""
from __future__ import annotations

import streamlit as st

import common
from organizer import curation

lib = common.library()
store = lib.store
SAMPLES = 6
CARDS_PER_SCREEN = 12


def name_cluster(cluster: int, name: str) -> None:
    common.act(curation.name_cluster, lib, cluster, name, done=f"Named cluster {cluster} “{name}”.")


def name_from_box(cluster: int) -> None:
    name = st.session_state.get(f"name-{cluster}", "")
    name_cluster(cluster, name)
    st.session_state[f"name-{cluster}"] = ""


def open_cluster(cluster: int | None) -> None:
    if cluster is None:
        st.query_params.pop("cluster", None)
    else:
        st.query_params["cluster"] = str(cluster)


def merge(clusters: list[int]) -> None:
    target = common.act(curation.merge_clusters, store, clusters)
    if target is not None:
        for c in clusters:
            st.session_state.pop(f"merge-{c}", None)
        common.say(f"Merged {len(clusters)} clusters into cluster {target}.")


def regroup(min_size: int, seed: int) -> None:
    with st.spinner("Grouping the images..."):
        result = common.act(lib.cluster, min_cluster_size=min_size or None, seed=seed)
    if result:
        common.say(f"{result['clusters']} clusters, {result['unsorted']} unsorted. Names were kept.")
    open_cluster(None)


def naming_row(info) -> None:
    """Suggested names as one-click buttons, and a free-text name."""
    if info.suggestions:
        with st.container(horizontal=True, gap="small"):
            st.caption("Suggested:", width="content")
            for k, (name, score) in enumerate(info.suggestions):
                st.button(name, key=f"sug-{info.id}-{k}", on_click=name_cluster, args=(info.id, name),
                          help=f"Name this cluster “{name}” (score {score:.2f})")
    with st.form(f"form-{info.id}", border=False, enter_to_submit=True):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        left.text_input("Name", key=f"name-{info.id}", placeholder="type a name",
                        label_visibility="collapsed")
        right.form_submit_button("Name it", on_click=name_from_box, args=(info.id,))


def title(info) -> str:
    if info.id < 0:
        return f"**Unsorted** · {info.size} images"
    part = f" ({info.labeled} of {info.size})" if info.labeled < info.size else ""
    named = f" · :green-badge[:material/check: named “{info.label}”{part}]"
    return f"**Cluster {info.id}** · {info.size} images" + (named if info.label else "")


def card(info, thumbs: dict) -> None:
    with st.container(border=True):
        st.markdown(title(info))
        images = [thumbs[i] for i in info.sample_ids if i in thumbs]
        if images:
            with st.container(key=f"thumbs-{info.id}"):
                st.image(images, width=92)
        if info.id >= 0:
            naming_row(info)
        with st.container(horizontal=True, vertical_alignment="center"):
            st.button("Open", key=f"open-{info.id}", on_click=open_cluster, args=(info.id,),
                      help="See all its images; move, drop or split")
            if info.id >= 0:
                st.checkbox("select to merge", key=f"merge-{info.id}")


def overview(infos) -> None:
    real = [c for c in infos if c.id >= 0]
    named = sum(1 for c in real if c.label)
    names = curation.label_names(store)
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.markdown(f"**{named} of {len(real)} groups named** · {store.counts()['labeled']} images carry a name.  \n"
                  "Name each group: click a suggested name or type your own. **Open** a group to fix it "
                  "(move, drop or split images). Then train a classifier on the names.")
    if len(names) >= 2 and right.button("Next: train a classifier →", type="primary", key="to-train"):
        st.switch_page("views/train.py")
    chosen = [c.id for c in real if st.session_state.get(f"merge-{c.id}")]
    if len(chosen) >= 2:
        st.button(f"Merge the {len(chosen)} selected clusters", type="primary", on_click=merge, args=(chosen,))
    shown = st.session_state.setdefault("cards_shown", CARDS_PER_SCREEN)
    visible = infos[:shown]
    thumbs = curation.thumbnails(store, [i for c in visible for i in c.sample_ids])
    cols = st.columns(2)
    for k, info in enumerate(visible):
        with cols[k % 2]:
            card(info, thumbs)
    if len(infos) > shown:
        st.button(f"Show more ({len(infos) - shown} left)",
                  on_click=lambda: st.session_state.update(cards_shown=shown + CARDS_PER_SCREEN))
    with st.expander("Re-group all images with other settings (names are kept)"):
        a, b, c = st.columns([1, 1, 1], vertical_alignment="bottom")
        size = a.number_input("Smallest group (0 = automatic)", 0, 100000, 0, key="regroup:size")
        seed = b.number_input("Seed", 0, 10_000, 0, key="regroup:seed")
        c.button("Re-group", on_click=regroup, args=(int(size), int(seed)))


# -- one cluster, all its images ---------------------------------------------------------------
def move(key: str) -> None:
    ids = sorted(common.selection(key))
    target = st.session_state.get(f"{key}:target")
    if not ids or target is None:
        return common.say("Select images first.", "warning")
    if common.act(curation.move_to_cluster, store, ids, target) is not None:
        common.say(f"Moved {len(ids)} images to " + ("unsorted." if target < 0 else f"cluster {target}."))
        common.clear_selection(key)


def name_selected(key: str) -> None:
    ids = sorted(common.selection(key))
    name = common.picked_name(f"{key}:label")
    if not ids:
        return common.say("Select images first.", "warning")
    if common.act(curation.move_to_label, store, ids, name) is not None:
        common.say(f"Named {len(ids)} images “{name}”.")
        common.clear_selection(key)


def drop(key: str) -> None:
    ids = sorted(common.selection(key))
    if not ids:
        return common.say("Select images first.", "warning")
    if common.act(curation.drop_to_unsorted, store, ids) is not None:
        common.say(f"Dropped {len(ids)} images to unsorted.")
        common.clear_selection(key)


def split(cluster: int) -> None:
    with st.spinner("Splitting..."):
        parts = common.act(curation.split_cluster, lib, cluster)
    if parts:
        common.say(f"Split cluster {cluster} into clusters {', '.join(map(str, parts))}.")
        open_cluster(None)


def detail(info, infos) -> None:
    key = f"c{info.id}"
    st.button("← All clusters", on_click=open_cluster, args=(None,))
    st.markdown(title(info))
    if info.id >= 0:
        naming_row(info)
    members = lib.cluster_members(info.id)
    chosen = common.selection(key) & set(members)
    with st.container(border=True):
        st.markdown(f"**{len(chosen)} of {len(members)} selected.** Tick images below, then:")
        a, b, c = st.columns(3)
        others = {o.id: o for o in infos if o.id != info.id}
        a.selectbox("Move them to another group", list(others), key=f"{key}:target",
                    format_func=lambda k: "unsorted" if k < 0 else
                    f"cluster {k}" + (f" — {others[k].label}" if others[k].label else "") + f" ({others[k].size})")
        a.button("Move", on_click=move, args=(key,), disabled=not chosen)
        with b:
            common.label_picker(f"{key}:label", "Or give them a name")
            st.button("Name them", on_click=name_selected, args=(key,), disabled=not chosen)
        if info.id >= 0:
            c.button("Drop them to unsorted", on_click=drop, args=(key,), disabled=not chosen,
                     help="They do not belong to this group: they lose its name")
            c.button("Split this whole cluster", on_click=split, args=(info.id,),
                     help="Re-cluster its images on their own into two or more groups")
    window = common.pager(len(members), key)
    page_ids = members[window]
    with st.container(horizontal=True):
        st.button("Select all on this page", on_click=common.select_all, args=(key, page_ids))
        st.button("Clear selection", on_click=common.clear_selection, args=(key,))
    common.grid(page_ids, key=key)


st.title("Clusters")
common.show_messages()
if store.counts()["images"] == 0:
    st.info("No images yet: index a folder first.")
    st.page_link("views/library.py", label="Go to Library to index a folder", icon=":material/photo_library:")
    st.stop()
if store.current_clustering_id() is None:
    st.info("The images are indexed but not grouped yet.")
    st.button("Find groups", type="primary", on_click=regroup, args=(0, 0))
    st.stop()

infos = lib.clusters(samples=SAMPLES)
opened = st.query_params.get("cluster")
current = next((c for c in infos if opened is not None and str(c.id) == opened), None)
if current is not None:
    detail(current, infos)
else:
    overview(infos)
