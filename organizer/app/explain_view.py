"""Heatmaps in the app: where the current model found a label, over the image's thumbnail.

Pages call `toggle` and then `image` / `grid`; the maps come from `Library.explain`, which
caches them per image, label and model (a retrained model never shows an older model's map)."""
from __future__ import annotations


import streamlit as st

from organizer.app import common

SIDE = 256  # thumbnails' long side: the map is drawn at the same size


def toggle(key: str, label: str = "Show heatmaps") -> bool:
    return st.toggle(label, key=f"explain:{key}",
                     help="Colour where the current model found the label (Grad-CAM); the model sees only the "
                          "centre square of each photo")


def overlay(image_id: str, label: str | None = None) -> bytes | None:
    """PNG of the thumbnail with the heatmap of `label` (default: the prediction), or None."""
    return common.library().explained_thumbnail(image_id, label, max_side=SIDE)


def image(image_id: str, thumb: bytes | None, show: bool, label: str | None = None) -> None:
    """One card's picture: the heatmap overlay when `show`, else the thumbnail."""
    picture = overlay(image_id, label) if show else None
    if picture is not None or thumb is not None:
        st.image(picture or thumb, width="stretch")


def grid(ids: list[str], label: str | None = None, captions: dict[str, str] | None = None,
         columns: int = common.GRID_COLUMNS, name: str = "explain") -> None:
    """Like common.grid, with every thumbnail replaced by its heatmap overlay (`name`: as there)."""
    box = st.container(key=f"grid-{name}")  # the grid CSS crops to squares, like the thumbnails
    with st.spinner("Computing heatmaps..."):
        for row in range(0, len(ids), columns):
            cols = box.columns(columns)
            for col, image_id in zip(cols, ids[row:row + columns]):
                with col:
                    picture = overlay(image_id, label)
                    if picture is None:
                        st.caption("(no heatmap)")
                    else:
                        st.image(picture, width="stretch")
                    if captions and image_id in captions:
                        st.caption(captions[image_id])
