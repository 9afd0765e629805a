"""The group tree on the Clusters page: agreement hints, sub-groups, look-alike clusters and
groups of groups. Everything is drawn from the one `lib.clusters(samples=..., tree=True)` list the
page fetches, so a card costs no query of its own."""
from __future__ import annotations

import streamlit as st

from organizer.app import common

MIXED_BELOW = 0.6   # below this share of agreeing neighbours one name is likely wrong for part of it
NODE_THUMBS = 4


class Tree:
    """The flat clusters and the tree nodes around them, indexed once per run."""

    def __init__(self, infos, flat_ids: set[int]):
        # a tree node that was a cluster before a split along the tree still says "group": it is
        # walked through (its parts are below it) but never shown as a card
        self.nodes = {c.id: c for c in infos}
        self.flat_ids = set(flat_ids)
        self.by_id = {c.id: c for c in infos if c.id in flat_ids or c.level not in ("group", "unsorted")}
        self.flat = [c for c in infos if c.id in flat_ids]
        below_all = {c.id for c in self.flat if c.id >= 0}
        # a parent over every cluster is the whole library: one name for it is never what a person wants
        self.parents = sorted((c for c in infos if c.level == "parent" and set(self.groups_below(c)) != below_all),
                              key=lambda c: (c.size, c.id))

    def subgroups(self, info) -> list:
        """Its sub-groups still in the tree (a split along the tree makes them clusters of their own)."""
        return [self.by_id[k] for k in info.children if k in self.by_id and self.by_id[k].level == "sub-group"]

    def look_alike(self, info) -> list[int]:
        """Clusters it looks like that still exist (a merge leaves stale pairs behind)."""
        return [k for k in info.look_alike if k != info.id and k >= 0 and k in self.flat_ids]

    def groups_below(self, node) -> list[int]:
        out, todo, seen = [], list(node.children), set()
        while todo:
            k = todo.pop()
            if k in seen or k not in self.nodes:
                continue
            seen.add(k)
            kid = self.nodes[k]
            if k in self.flat_ids:
                out.append(k)
            todo.extend(kid.children)
        return sorted(out)

    def thumb_ids(self, cards) -> list[str]:
        ids = [i for c in cards for s in self.subgroups(c) for i in s.sample_ids[:NODE_THUMBS]]
        return ids + [i for p in self.parents for i in p.sample_ids[:NODE_THUMBS]]


def agreement_hint(info) -> None:
    if info.agreement is None:
        return
    pct = f"members agree {info.agreement:.0%}"
    why = "The share of its images whose closest look-alikes are in it too."
    if info.agreement < MIXED_BELOW:
        st.caption(f":orange[:material/warning: looks mixed] ({pct}): open it to move or split what does not "
                   "belong", help=why)
    else:
        st.caption(pct, help=why)


def look_alike_row(info, tree: Tree, merge) -> None:
    """'looks like cluster X — merge?' with the page's merge action for that pair."""
    for other in tree.look_alike(info):
        o = tree.by_id[other]
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            st.caption(f"looks like cluster {other}" + (f" “{o.label}”" if o.label else "") + " — merge?",
                       width="content")
            st.button(f"Merge with {other}", key=f"alike-{info.id}-{other}", on_click=merge,
                      args=([info.id, other],), help="The names stay on the images; undo it from Last changes")


def name_node_from_box(lib, key: str, node: int, what: str, at: str) -> None:
    """Name one tree node (a sub-group alone, or every cluster under a parent) from its text box."""
    name = st.session_state.get(key, "")
    n = common.act(lib.name_cluster, node, name, at=at)
    if n is not None:
        common.say(f"Named {what} {node} “{' '.join(name.split())}” ({n} images; names given by hand were kept).",
                   at=at)
        st.session_state[key] = ""  # a refused name stays in the box, to be fixed


def name_form(lib, node: int, what: str, at: str, button: str) -> None:
    key = f"node-name-{node}"
    with st.form(f"node-form-{node}", border=False, enter_to_submit=True):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        left.text_input("Name", key=key, placeholder=f"name this {what}", label_visibility="collapsed")
        right.form_submit_button(button, on_click=name_node_from_box, args=(lib, key, node, what, at))


def node_thumbs(node, thumbs: dict) -> None:
    images = [thumbs[i] for i in node.sample_ids[:NODE_THUMBS] if i in thumbs]
    if images:
        with st.container(key=f"thumbs-node-{node.id}"):
            st.image(images, width=92)


def subgroups(lib, info, tree: Tree, thumbs: dict, split) -> None:
    """A compact 'N sub-groups' expander: each part of the cluster, to name alone."""
    subs = tree.subgroups(info)
    if not subs:
        return
    at = f"sub-{info.id}"
    with st.expander(f"{len(subs)} sub-group" + ("s" if len(subs) > 1 else "")):
        common.show_messages(at)
        for s in subs:
            named = f" · named “{s.label}” ({s.labeled})" if s.label else ""
            agree = f" · members agree {s.agreement:.0%}" if s.agreement is not None else ""
            st.markdown(f"**Sub-group {s.id}** · {s.size} images{named}{agree}")
            node_thumbs(s, thumbs)
            name_form(lib, s.id, "sub-group", at, "Name it")
        if len(subs) >= 2:
            st.button(f"Split into these {len(subs)} sub-groups", key=f"split-subs-{info.id}", on_click=split,
                      args=(info.id,), help="Each becomes a cluster of its own; no re-clustering, names stay")


def parents_section(lib, tree: Tree, thumbs: dict) -> None:
    """Groups of groups: one name for every cluster under one, in one step."""
    if not tree.parents:
        return
    with st.expander(f"Groups of groups ({len(tree.parents)}): name several clusters in one step"):
        st.caption("Clusters that look alike at a coarser level. Naming one names every image under it "
                   "that no person named by hand.")
        common.show_messages("parents")
        for p in tree.parents:
            below = ", ".join(f"{g}" + (f" “{tree.by_id[g].label}”" if tree.by_id[g].label else "")
                              for g in tree.groups_below(p))
            st.markdown(f"**Group of groups {p.id}** · {p.size} images · clusters {below}")
            node_thumbs(p, thumbs)
            name_form(lib, p.id, "group of groups", "parents", f"Name all {p.size}")
