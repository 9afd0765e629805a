"""Which map dots a box or a lasso drawn on the app's map encloses, over every dot.

The browser draws a sample of a big map (WebGL copes with tens of thousands of dots, not with
hundreds of thousands), but what it sends back is the shape; testing the shape against all
coordinates here makes the selection exact whatever was drawn."""
from __future__ import annotations

import numpy as np


def in_box(xy: np.ndarray, x_range, y_range) -> np.ndarray:
    (x0, x1), (y0, y1) = sorted(map(float, x_range)), sorted(map(float, y_range))
    return (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)


def in_polygon(xy: np.ndarray, xs, ys) -> np.ndarray:
    """Even-odd rule (a ray to the right crosses the outline an odd number of times), vectorised
    over the points, one loop over the polygon's edges."""
    px, py = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    inside = np.zeros(len(xy), bool)
    if len(px) < 3:
        return inside
    x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
    for k in range(len(px)):
        x1, y1, x2, y2 = px[k - 1], py[k - 1], px[k], py[k]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < at)
    return inside


def selected(xy: np.ndarray, selection: dict) -> np.ndarray:
    """Mask of the dots inside any box or lasso of a plotly selection event ({"box": [...],
    "lasso": [...]}, each shape with "x" and "y" lists)."""
    mask = np.zeros(len(xy), bool)
    for box in selection.get("box") or []:
        if len(box.get("x") or []) >= 2 and len(box.get("y") or []) >= 2:
            mask |= in_box(xy, box["x"][:2], box["y"][:2])
    for lasso in selection.get("lasso") or []:
        mask |= in_polygon(xy, lasso.get("x") or [], lasso.get("y") or [])
    return mask
