"""`organizer explain`: where in the image the model found its label (see organizer/explain.py)."""
from __future__ import annotations

import json
from typing import Optional

import typer

from organizer.cli.base import StoreOpt, app, guarded, open_library



@app.command()
@guarded
def explain(target: str = typer.Argument(..., help="A library path, an image id, or any image file."),
            label: Optional[str] = typer.Option(None, "--label", help="Explain this label instead of the prediction."),
            out: Optional[str] = typer.Option(None, "--out", help="Write the image with the heatmap over it "
                                              "(.png, .jpg or .webp; never inside the image folder)."),
            out_map: Optional[str] = typer.Option(None, "--out-map", help="Save the map: float32 .npy in [0, 1] at "
                                                  "the image's own (EXIF-oriented) pixel size."),
            method: str = typer.Option("auto", help="auto (Grad-CAM where the backbone allows, else occlusion), "
                                       "gradcam or occlusion."),
            store: Optional[str] = StoreOpt, as_json: bool = typer.Option(False, "--json")):
    """Show which part of an image made the current model's label (Grad-CAM heatmap)."""
    lib = open_library(store)
    lib.explanation_outputs(target, out=out, out_map=out_map)  # refused before the heatmap is computed
    e = lib.explain(target, label, method=method)
    written = lib.save_explanation(e, out=out, out_map=out_map)
    info = {"file": e.source, "image_id": e.image_id, "label": e.label, "confidence": round(e.confidence, 4),
            "predicted": e.predicted, "model_id": e.model_id, "method": e.method,
            "height": int(e.heatmap.shape[0]), "width": int(e.heatmap.shape[1]),
            "out": str(written["out"]) if "out" in written else None,
            "out_map": str(written["out_map"]) if "out_map" in written else None}
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    note = "" if e.label == e.predicted else f"  (the model predicts {e.predicted})"
    typer.echo(f"{e.source}\t{e.label}\t{e.confidence:.3f}{note}")
    for name in ("out", "out_map"):
        if info[name]:
            typer.echo(f"wrote {info[name]}")
    if not (out or out_map):
        typer.echo("(use --out FILE.png to save the heatmap overlay, --out-map FILE.npy for the raw map)", err=True)
