"""CLI commands that take the organization out of the tool: `export --format xmp|folders`
(called from `export` in cli.py), `export-model`, `serve` and `watch`.

Registered on the main `app` when `organizer.cli` imports this module."""
from __future__ import annotations

import json
from typing import Optional

import typer

from organizer.cli.base import app, fail, guarded, open_library, StoreOpt  # noqa: F401


def export_interop(lib, fmt: str, out: Optional[str], *, beside_originals: bool, naming: str, what: str,
                   min_confidence: Optional[float], prefix: str, dry_run: bool, remove: bool, link: str) -> None:
    if fmt == "folders":
        if out is None:
            fail("--format folders needs --out DIR (a folder outside the library)")
        report = lib.export_folders(out, link=link)
        for path, why in report.skipped[:20]:
            typer.echo(f"  skipped {path}: {why}", err=True)
        typer.echo(report.summary())
        for folder, n in sorted(report.folders.items()):
            typer.echo(f"{n:8d}  {folder}/")
        return
    report = lib.export_xmp(out=out, beside_originals=beside_originals, naming=naming, what=what,
                            min_confidence=min_confidence, prefix=prefix, dry_run=dry_run, remove=remove)
    if dry_run:  # the list comes first, so a person sees every file before anything is written
        for action, path in report.actions:
            typer.echo(f"{action}\t{path}")
    for path, why in report.skipped[:20]:
        typer.echo(f"  skipped {path}: {why}", err=True)
    if len(report.skipped) > 20:
        typer.echo(f"  ... and {len(report.skipped) - 20} more", err=True)
    if report.shared:
        typer.echo(f"note: {report.shared} sidecars are shared by images with the same name (--naming stem): "
                   "they carry the keywords of all of them", err=True)
    typer.echo(report.summary() + (" (dry run: nothing written)" if dry_run else ""))


@app.command("export-model")
@guarded
def export_model(out: str = typer.Option(..., "--out", help="Folder for model.onnx and model.json."),
                 store: Optional[str] = StoreOpt,
                 model_id: Optional[int] = typer.Option(None, "--model", help="A model id (default: current).")):
    """The current classifier as one ONNX file (image tensor in, calibrated probabilities out) and model.json."""
    lib = open_library(store)
    meta = lib.export_model(out, model_id=model_id)
    typer.echo(f"wrote model {meta['model_id']} ({len(meta['labels'])} labels, input "
               f"{meta['input_size'][0]}x{meta['input_size'][1]}) to {out}/model.onnx and model.json; "
               f"checked against organizer on {meta['verified']['images']} images "
               f"(largest probability difference {meta['verified']['max_probability_error']:.1e})")


@app.command()
@guarded
def serve(store: Optional[str] = StoreOpt,
          host: str = typer.Option("127.0.0.1", help="Address to listen on; other than loopback needs --token."),
          port: int = typer.Option(8000, help="Port."),
          token: Optional[str] = typer.Option(None, envvar="ORGANIZER_TOKEN",
                                              help="Require `Authorization: Bearer TOKEN` on /v1/ requests."),
          max_bytes: int = typer.Option(50 << 20, help="Largest upload in bytes."),
          max_pixels: Optional[int] = typer.Option(None, help="Refuse images with more pixels (as for indexing).")):
    """A prediction API over HTTP: POST /v1/predict, /v1/predict/batch; GET /v1/labels, /v1/model, /health; docs at /docs."""
    lib = open_library(store)
    typer.echo(f"organizer API: http://{host}:{port}  (store {lib.store.root}; docs at /docs; Ctrl+C to stop)",
               err=True)
    try:
        lib.serve(host=host, port=port, token=token, max_bytes=max_bytes, max_pixels=max_pixels)
    except KeyboardInterrupt:
        pass


@app.command()
@guarded
def watch(folder: str = typer.Argument(..., help="The library folder (the one `organizer index` reads)."),
          store: Optional[str] = StoreOpt,
          interval: float = typer.Option(5.0, help="Seconds between looks at the folder."),
          sidecars: Optional[str] = typer.Option(None, "--sidecars",
                                                 help="Also write XMP sidecars: a DIR (mirror tree) or 'beside'."),
          naming: str = typer.Option("ext", help="Sidecar naming: ext (photo.jpg.xmp) or stem (photo.xmp)."),
          as_json: bool = typer.Option(False, "--json", help="One JSON line per round.")):
    """Index new files as they appear, predict them, and (with --sidecars) write their sidecars. Ctrl+C stops."""
    from dataclasses import asdict

    lib = open_library(store, create=True)
    options = None
    if sidecars is not None:
        options = {"naming": naming, **({"beside_originals": True} if sidecars == "beside" else {"out": sidecars})}

    def show(r):
        if as_json:
            typer.echo(json.dumps(asdict(r)))
            return
        for path, why in r.errors[:10]:
            typer.echo(f"  skipped {path}: {why}", err=True)
        for path, label, conf in r.predicted:
            typer.echo(f"{path}\t{label}\t{conf:.3f}")
        if r.note:
            typer.echo(f"note: {r.note}", err=True)

    typer.echo(f"watching {folder} every {interval:g}s (Ctrl+C to stop)", err=True)
    n = lib.watch(folder, interval=interval, sidecars=options, on_round=show)
    typer.echo(f"stopped after {n} rounds; everything indexed is kept", err=True)
