"""`organizer explain`: where in the image the model found its label (see organizer/explain.py)."""
from __future__ import annotations

import json
from typing import Optional

import typer

from organizer.cli.base import StoreOpt, app, fail, guarded, open_library

IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


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
    from pathlib import Path

    import numpy as np

    lib = open_library(store)
    targets = {}
    for name, value in (("--out", out), ("--out-map", out_map)):
        if value:
            dest = lib.outside_library(value)  # the image folder is never written to
            if dest.exists() and Path(target).exists() and dest.samefile(target):
                fail(f"{name} {value} is the image being explained; choose another file")
            targets[name] = dest
    if out and targets["--out"].suffix.lower() not in IMAGE_SUFFIXES:
        fail(f"--out {out}: use a .png, .jpg or .webp file name")
    if out_map and targets["--out-map"].suffix.lower() != ".npy":
        fail(f"--out-map {out_map}: the map is saved as a .npy file")
    e = lib.explain(target, label, method=method)
    from organizer.store import atomic_write

    if out:
        from organizer.ingest.decode import DecodeError, decode_image
        from organizer.learn.explain import overlay_bytes

        try:  # full resolution this time (min_side 0: no reduction while decoding)
            image = decode_image(Path(e.source).read_bytes(), name=e.source, min_side=0).image
        except (OSError, DecodeError) as err:
            fail(str(err))
        data = overlay_bytes(image, e.heatmap, IMAGE_SUFFIXES[targets["--out"].suffix.lower()])
        targets["--out"].parent.mkdir(parents=True, exist_ok=True)
        atomic_write(targets["--out"], lambda f: f.write(data))
    if out_map:
        targets["--out-map"].parent.mkdir(parents=True, exist_ok=True)
        atomic_write(targets["--out-map"], lambda f: np.save(f, e.heatmap.astype(np.float32), allow_pickle=False))
    info = {"file": e.source, "image_id": e.image_id, "label": e.label, "confidence": round(e.confidence, 4),
            "predicted": e.predicted, "model_id": e.model_id, "method": e.method,
            "height": int(e.heatmap.shape[0]), "width": int(e.heatmap.shape[1]),
            "out": str(targets["--out"]) if out else None, "out_map": str(targets["--out-map"]) if out_map else None}
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
