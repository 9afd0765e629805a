"""Clusters: name groups with one click, fix them (move, drop, merge, split), re-group."""
from __future__ import annotations

import streamlit as st

from organizer.app import common
from organizer.app import tree_view

lib = common.library()
SAMPLES = 6
CARDS_PER_SCREEN = 12


def name_cluster(cluster: int, name: str) -> int | None:
    return common.act(lib.name_cluster, cluster, name, done=f"Named cluster {cluster} “{name}”.",
                      at=f"card-{cluster}")


def name_from_box(cluster: int) -> None:
    name = st.session_state.get(f"name-{cluster}", "")
    if name_cluster(cluster, name) is not None:  # a refused name stays in the box, to be fixed
        st.session_state[f"name-{cluster}"] = ""


def open_cluster(cluster: int | None) -> None:
    if cluster is None:
        st.query_params.pop("cluster", None)
    else:
        st.query_params["cluster"] = str(cluster)


def merge(clusters: list[int]) -> None:
    target = common.act(lib.merge_clusters, clusters, at="merge")
    if target is None:
        return
    for c in clusters:  # untick every box, the survivor's too (popping the key left it ticked)
        st.session_state[f"merge-{c}"] = False
    names = lib.cluster_name_counts().get(target, [])
    carried = ", ".join(f"{n} “{name}”" for name, n in names)
    more = (f" It holds {carried}: give it one name to make them one group." if len(names) > 1
            else f" It holds {carried}." if names else "")
    common.say(f"Merged clusters {', '.join(map(str, clusters))} into cluster {target}.{more}", at="merge")


def regroup(min_size: int, seed: int) -> None:
    """Runs in the script body (a callback only asks for it) so its progress shows by the button."""
    with st.status("Grouping every image again (names stay on the images)...", expanded=True) as box:
        st.write(f"{lib.counts()['images']} images" + (f", smallest group {min_size}" if min_size else
                                                         ", automatic group size"))
        result = common.act(lib.cluster, min_cluster_size=min_size or None, seed=seed, keep_empty=False,
                            at="regroup")
        box.update(label="Grouped" if result else "Not re-grouped", state="complete" if result else "error")
    if result:
        common.say(f"{result.clusters} clusters, {result.unsorted} unsorted. Names were kept.", at="regroup")
    open_cluster(None)


def ask_regroup() -> None:
    """Read the numbers as they were sent: a value outside the fields' bounds is refused, not clamped."""
    size, seed = st.session_state.get("regroup:size", 0), st.session_state.get("regroup:seed", 0)
    if not (float(size).is_integer() and 0 <= size <= 100_000 and float(seed).is_integer() and 0 <= seed <= 10_000):
        return common.say(f"Refused: the smallest group must be a whole number from 0 to 100000 and the seed "
                          f"one from 0 to 10000 (got {size} and {seed}); nothing was changed.", "error", "regroup")
    ask("regroup", int(size), int(seed))


def ask(action: str, *args) -> None:
    """A callback for a long action: the body runs it where its button is, with progress."""
    st.session_state["pending"] = (action, args)


def pending(action: str):
    """The arguments of `action` if its button was just clicked (and forget it)."""
    value = st.session_state.get("pending")
    if value and value[0] == action:
        del st.session_state["pending"]
        return value[1]
    return None


def split_from_card(cluster: int) -> None:
    """Open the cluster and split it there, where the split shows its progress."""
    open_cluster(cluster)
    ask("split", cluster)


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
    names = NAME_COUNTS.get(info.id, [])
    top = names[0][1] if names else 0
    part = f" ({top} of {info.size})" if top < info.size else ""
    named = f" · :green-badge[:material/check: named “{info.label}”{part}]"
    # a merge or a move can leave several names in one group: say so, it is one click to unify
    also = "".join(f" · :orange-badge[also “{name}” ({n})]" for name, n in names[1:4])
    also += f" · :orange-badge[+{len(names) - 4} more names]" if len(names) > 4 else ""
    return f"**Cluster {info.id}** · {info.size} images" + (named + also if info.label else "")


def card(info, thumbs: dict) -> None:
    with st.container(border=True):
        st.markdown(title(info))
        common.show_messages(f"card-{info.id}")
        images = [thumbs[i] for i in info.sample_ids if i in thumbs]
        if images:
            with st.container(key=f"thumbs-{info.id}"):
                st.image(images, width=92)
        if info.id >= 0:
            tree_view.agreement_hint(info)
            tree_view.look_alike_row(info, TREE, merge)
            naming_row(info)
            tree_view.subgroups(lib, info, TREE, thumbs, split_from_card)
        with st.container(horizontal=True, vertical_alignment="center"):
            st.button("Open", key=f"open-{info.id}", on_click=open_cluster, args=(info.id,),
                      help="See all its images; move, drop or split")
            if info.id >= 0:
                st.checkbox("select to merge", key=f"merge-{info.id}")


def overview(infos) -> None:
    real = [c for c in infos if c.id >= 0]
    named = sum(1 for c in real if c.label)
    names = lib.label_names()
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.markdown(f"**{named} of {len(real)} groups named** · {lib.counts()['labeled']} images carry a name.  \n"
                  "Name each group: click a suggested name or type your own. **Open** a group to fix it "
                  "(move, drop or split images). Then train a classifier on the names.")
    if len(names) >= 2 and right.button("Next: train a classifier →", type="primary", key="to-train"):
        st.switch_page("views/train.py")
    chosen = [c.id for c in real if st.session_state.get(f"merge-{c.id}")]
    common.show_messages("merge")
    if len(chosen) >= 2:
        st.button(f"Merge the {len(chosen)} selected clusters", type="primary", on_click=merge, args=(chosen,))
    shown = st.session_state.setdefault("cards_shown", CARDS_PER_SCREEN)
    visible = infos[:shown]
    thumbs = lib.thumbnails([i for c in visible for i in c.sample_ids] + TREE.thumb_ids(visible))
    cols = st.columns(2)
    for k, info in enumerate(visible):
        with cols[k % 2]:
            card(info, thumbs)
    if len(infos) > shown:
        st.button(f"Show more ({len(infos) - shown} left)",
                  on_click=lambda: st.session_state.update(cards_shown=shown + CARDS_PER_SCREEN))
    tree_view.parents_section(lib, TREE, thumbs)
    with st.expander("Re-group all images with other settings (names are kept)"):
        a, b, c = st.columns([1, 1, 1], vertical_alignment="bottom")
        size = a.number_input("Smallest group (0 = automatic)", 0, 100000, 0, key="regroup:size")
        seed = b.number_input("Seed", 0, 10_000, 0, key="regroup:seed")
        c.button("Re-group", on_click=ask_regroup)
        args = pending("regroup")
        if args:
            regroup(*args)
            st.rerun()
        common.show_messages("regroup")


# -- one cluster, all its images ---------------------------------------------------------------
def move(key: str) -> None:
    ids = sorted(common.selection(key))
    target = st.session_state.get(f"{key}:target")
    if not ids or target is None:
        return common.say("Select images first.", "warning", "detail")
    if common.act(lib.move_to_cluster, ids, target, at="detail") is not None:
        common.say(f"Moved {len(ids)} images to " + ("unsorted." if target < 0 else f"cluster {target}."),
                   at="detail")
        common.clear_selection(key)


def name_selected(key: str) -> None:
    ids = sorted(common.selection(key))
    name = common.picked_name(f"{key}:label")
    if not ids:
        return common.say("Select images first.", "warning", "detail")
    if common.act(lib.label_ids, ids, name, at="detail") is not None:
        common.say(f"Named {len(ids)} images “{name}”.", at="detail")
        common.clear_selection(key)


def drop(key: str) -> None:
    ids = sorted(common.selection(key))
    if not ids:
        return common.say("Select images first.", "warning", "detail")
    if common.act(lib.drop_to_unsorted, ids, at="detail") is not None:
        common.say(f"Dropped {len(ids)} images to unsorted.", at="detail")
        common.clear_selection(key)


def split(cluster: int) -> None:
    """Runs in the script body, by its button: the first split loads the clusterer and the
    image model (tens of seconds on a small machine), so each step is shown as it starts."""
    with st.status(f"Splitting cluster {cluster}...", expanded=True) as box:
        parts = common.act(lib.split_cluster, cluster, progress=st.write, at="detail")
        box.update(label=f"Split cluster {cluster}" if parts else "Not split", state="complete" if parts else "error")
    if parts:
        common.say(f"Split cluster {cluster} into clusters {', '.join(map(str, parts))}.")
        open_cluster(None)
    st.rerun()


def detail(info, infos) -> None:
    key = f"c{info.id}"
    st.button("← All clusters", on_click=open_cluster, args=(None,))
    st.markdown(title(info))
    if info.id >= 0:
        tree_view.agreement_hint(info)
        naming_row(info)
    members = lib.cluster_members(info.id)
    chosen = common.selection(key) & set(members)
    with st.container(border=True):
        st.markdown(f"**{len(chosen)} of {len(members)} selected.** Tick images below, then:")
        common.show_messages("detail")
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
            subs = TREE.subgroups(info)
            if len(subs) >= 2:  # split_cluster then follows the tree: no re-clustering
                c.button(f"Split into its {len(subs)} sub-groups", on_click=ask, args=("split", info.id),
                         help="Each sub-group the tree found becomes a cluster of its own (no re-clustering); "
                              "names stay on the images")
            else:
                c.button("Split this whole cluster", on_click=ask, args=("split", info.id),
                         help="Re-cluster its images on their own into two or more groups")
            args = pending("split")
            if args:
                with c:
                    split(*args)
    window = common.pager(len(members), key)
    page_ids = members[window]
    with st.container(horizontal=True):
        st.button("Select all on this page", on_click=common.select_all, args=(key, page_ids))
        st.button("Clear selection", on_click=common.clear_selection, args=(key,))
    common.grid(page_ids, key=key)


st.title("Clusters")
common.show_messages()
if lib.counts()["images"] == 0:
    st.info("No images yet: index a folder first.")
    st.page_link("views/library.py", label="Go to Library to index a folder", icon=":material/photo_library:")
    st.stop()
if not lib.has_groups():
    st.info("The images are indexed but not grouped yet.")
    st.button("Find groups", type="primary", on_click=ask, args=("regroup", 0, 0))
    if pending("regroup"):
        regroup(0, 0)
        st.rerun()
    common.show_messages("regroup")
    st.stop()

TREE = tree_view.Tree(lib.clusters(samples=SAMPLES, tree=True), lib.flat_cluster_ids())  # the one query for every card
infos = TREE.flat
NAME_COUNTS = lib.cluster_name_counts()
opened = st.query_params.get("cluster")
current = next((c for c in infos if opened is not None and str(c.id) == opened), None)
if current is not None:
    detail(current, infos)
else:
    overview(infos)
