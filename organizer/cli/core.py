"""The core loop's commands: index, cluster, name, label, train, predict, review, search, export, status, ui."""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import List, Optional

import typer

from organizer.cli.base import (EngineOpt, RayAddressOpt, StoreOpt, app, fail, guarded, open_library, progress_bar,
                                 progress_update, stderr_console)


@app.command()
@guarded
def index(folder: str = typer.Argument(..., help="Folder of images (never written to)."),
          store: Optional[str] = StoreOpt,
          backbone: str = typer.Option("auto", help="auto | efficientnet-lite0 | clip[:MODEL[:PRETRAINED_OR_FILE]]"),
          workers: Optional[int] = typer.Option(None, help="Decode processes (default: cores - 1); with --engine ray, "
                                                           "actors (default: the cluster's CPUs)."),
          engine: str = EngineOpt, ray_address: Optional[str] = RayAddressOpt,
          allow_missing: bool = typer.Option(False, help="Accept that most indexed files disappeared."),
          follow_links: bool = typer.Option(False, help="Follow symlinks, also those leading outside the folder (each folder is entered once, so loops end)."),
          max_pixels: Optional[int] = typer.Option(None, help="Refuse images with more pixels than this."),
          show_errors: int = typer.Option(10, help="How many failed files to list.")):
    """Index a folder: decode and embed new or changed images (incremental)."""
    lib = open_library(store, create=True)
    with progress_bar("embedding") as bar:
        task = bar.add_task("embedding", total=None)
        report = lib.index(folder, backbone=backbone, workers=workers, allow_missing=allow_missing,
                           follow_links=follow_links, max_pixels=max_pixels, engine=engine, ray_address=ray_address,
                           progress=progress_update(bar, task))
    for path, error in report.error_files[:show_errors]:
        typer.echo(f"  skipped {path}: {error}", err=True)
    if len(report.error_files) > show_errors:
        typer.echo(f"  ... and {len(report.error_files) - show_errors} more (see `organizer status --errors`)", err=True)
    typer.echo(report.summary())
    if lib.counts()["ok"] < 2:
        typer.echo("note: fewer than two images indexed; add images before clustering or training", err=True)
    lib.close()
    from organizer.cli import fastexit

    fastexit.request()  # committed and closed: the interpreter's teardown would only free memory


@app.command()
@guarded
def cluster(store: Optional[str] = StoreOpt,
            min_cluster_size: Optional[int] = typer.Option(None, help="Smallest group a person would name (default 10, at any library size)."),
            seed: int = typer.Option(0, help="Same seed, same clusters."),
            max_fit: Optional[int] = typer.Option(None, help="Images UMAP and HDBSCAN are fitted on (default 20,000); "
                                                  "every other image takes the group its neighbours in them are in."),
            engine: str = EngineOpt, ray_address: Optional[str] = RayAddressOpt,
            workers: Optional[int] = typer.Option(None, help="With --engine ray: tasks at once (default: the cluster's CPUs).")):
    """Discover groups (UMAP + HDBSCAN). Names live on images, so nothing is lost."""
    lib = open_library(store)
    with stderr_console().status("clustering..."):
        result = lib.cluster(min_cluster_size=min_cluster_size, seed=seed, max_fit=max_fit, engine=engine,
                             ray_address=ray_address, workers=workers)
    typer.echo(f"{result.clusters} clusters over {result.images} images; "
               f"{result.unsorted} unsorted (clustering {result.clustering_id})")
    _print_clusters(lib.clusters(samples=3))


def _print_clusters(infos):
    for c in infos:
        if c.level not in ("group", "unsorted"):
            continue
        names = ", ".join(n for n, _ in c.suggestions) or "-"
        label = f"  [{c.label}: {c.labeled}]" if c.label else ""
        title = "unsorted" if c.id < 0 else f"cluster {c.id}"
        agree = "" if c.agreement is None else f"  agreement {c.agreement:.2f}"
        parts = f"  sub-groups {c.children}" if c.children else ""
        alike = f"  looks like {c.look_alike}" if c.look_alike else ""
        typer.echo(f"{title:>12}  {c.size:6d} images{agree}  suggested: {names}{label}{parts}{alike}")


@app.command()
@guarded
def clusters(store: Optional[str] = StoreOpt, as_json: bool = typer.Option(False, "--json"),
             samples: int = typer.Option(5, help="Sample paths per cluster.")):
    """List clusters: id, size, suggested names, sample paths."""
    from dataclasses import asdict

    lib = open_library(store)
    infos = lib.clusters(samples=samples, tree=as_json)
    if not infos:
        fail("no clustering yet: run `organizer cluster` first")
    if as_json:
        typer.echo(json.dumps([{**asdict(c), "suggestions": [n for n, _ in c.suggestions]} for c in infos], indent=1))
        return
    _print_clusters(infos)
    for c in infos:
        if c.id >= 0 and c.level == "group":
            typer.echo(f"  {c.id}: " + "  ".join(c.sample_paths))


@app.command()
@guarded
def name(cluster_id: int = typer.Argument(...), name: str = typer.Argument(...), store: Optional[str] = StoreOpt):
    """Name a cluster: every image in it gets NAME (names given one by one are kept)."""
    n = open_library(store).name_cluster(cluster_id, name)
    typer.echo(f"labeled {n} images as {name!r}")


@app.command()
@guarded
def label(paths: List[str] = typer.Argument(..., help="Paths relative to the indexed folder."),
          as_: str = typer.Option(..., "--as", help="The name to give."), store: Optional[str] = StoreOpt):
    """Label images by path."""
    n = open_library(store).label(paths, as_)
    typer.echo(f"labeled {n} images as {as_!r}")


@app.command()
@guarded
def train(store: Optional[str] = StoreOpt, threshold: Optional[float] = typer.Option(
        None, help="Confidence below which a prediction is 'unknown' (default: learned)."),
          class_threshold: Optional[List[str]] = typer.Option(
              None, "--class-threshold", help="CLASS=VALUE: 'unknown' threshold for one class (repeatable)."),
          force: bool = typer.Option(False, "--force", help="Make the new model current even if it scores lower.")):
    """Train a classifier on the labeled images and print cross-validated metrics."""
    lib = open_library(store)
    for item in class_threshold or []:
        cls, _, value = item.rpartition("=")
        try:
            lib.set_class_threshold(cls.strip() or fail(f"--class-threshold {item!r}: expected CLASS=VALUE"),
                                    float(value))
        except ValueError:
            fail(f"--class-threshold {item!r}: VALUE must be a number between 0 and 1")
    with stderr_console().status("training..."):
        m = lib.train(threshold=threshold, force=force)
    typer.echo(f"model {m['model_id']}: {m['n_train']} labeled images ({m['n_person']} by a person), "
               f"{len(m['classes'])} classes")
    typer.echo(("current: " if m["current"] else "not current: ") + m["decision"])
    if "accuracy" in m:
        typer.echo(f"cross-validated ({m['folds']}-fold): accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
                   f"unknown below confidence {m['threshold']:.2f}")
        cal = m.get("calibration", {})
        if "ece_before" in cal:
            typer.echo(f"calibration: temperature {cal['temperature']:.2f}; expected calibration error on held-out "
                       f"images {cal['ece_before']:.3f} before, {cal['ece_after']:.3f} after")
        width = max(len(c) for c in m["classes"])
        typer.echo(f"{'class':<{width}}  precision  recall  support")
        for c, s in m["per_class"].items():
            typer.echo(f"{c:<{width}}  {s['precision']:9.3f}  {s['recall']:6.3f}  {s['support']:7d}")
        typer.echo("confusion matrix (rows: given label, columns: predicted):")
        for c, row in zip(m["classes"], m["confusion"]):
            typer.echo(f"{c:<{width}}  " + " ".join(f"{v:5d}" for v in row))
    else:
        typer.echo(m.get("note", ""))
    typer.echo(f"predicted {m['predicted']} images with the current model")


@app.command()
@guarded
def predict(files: Optional[List[str]] = typer.Argument(None, help="Image files to label without adding them."),
            store: Optional[str] = StoreOpt, as_json: bool = typer.Option(False, "--json"),
            engine: str = EngineOpt, ray_address: Optional[str] = RayAddressOpt,
            workers: Optional[int] = typer.Option(None, help="With --engine ray: tasks at once (default: the cluster's CPUs).")):
    """Predict labels: for the whole library (stored), or for the FILES given."""
    lib = open_library(store)
    if not files:
        n = lib.predict(engine=engine, ray_address=ray_address, workers=workers)
        typer.echo(f"predicted {n} images: " + ", ".join(f"{k} {v}" for k, v in lib.prediction_counts()))
        return
    rows, errors = lib.predict_files(files)
    for f, e in errors:
        typer.echo(f"  skipped {f}: {e}", err=True)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
    else:
        for r in rows:
            typer.echo(f"{r['file']}\t{r['predicted']}\t{r['confidence']:.3f}")
    if not rows:
        raise typer.Exit(1)


@app.command()
@guarded
def review(store: Optional[str] = StoreOpt, limit: int = typer.Option(20, "--limit", help="How many images."),
           strategy: str = typer.Option("auto", envvar="ORGANIZER_REVIEW_STRATEGY",
                                        help="auto (uncertain, diverse, rare classes) or random (a spot check)."),
           as_json: bool = typer.Option(False, "--json")):
    """Images no person has labeled yet that are worth labeling next."""
    items = open_library(store).review(limit, strategy=strategy)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(it) for it in items], indent=1))
        return
    for it in items:
        typer.echo(f"{it.path}\t{it.predicted}\t{it.confidence:.3f}")


def _print_hits(hits, as_json):
    if as_json:
        typer.echo(json.dumps([{"path": p, "image_id": i, "score": s} for p, i, s in hits], indent=1))
    else:
        for p, _, s in hits:
            typer.echo(f"{s:.4f}\t{p}")


@app.command()
@guarded
def similar(target: str = typer.Argument(..., help="A library path, an image id, or any image file."),
            store: Optional[str] = StoreOpt, k: int = typer.Option(10, "-k"),
            as_json: bool = typer.Option(False, "--json")):
    """Images most similar to TARGET."""
    _print_hits(open_library(store).similar(target, k), as_json)


@app.command()
@guarded
def search(text: str = typer.Argument(...), store: Optional[str] = StoreOpt, k: int = typer.Option(10, "-k"),
           as_json: bool = typer.Option(False, "--json")):
    """Images matching a text description (CLIP backbones)."""
    _print_hits(open_library(store).search_text(text, k), as_json)


@app.command()
@guarded
def export(format: str = typer.Option("csv", "--format", help="csv, json, xmp (sidecars) or folders"),
           out: Optional[str] = typer.Option(None, "--out", help="Output file (csv, json) or folder (xmp, folders); "
                                                                 "not inside the image folder."),
           store: Optional[str] = StoreOpt,
           beside_originals: bool = typer.Option(False, "--beside-originals", help="xmp: write next to the images."),
           naming: str = typer.Option("ext", help="xmp: ext (photo.jpg.xmp) or stem (photo.xmp)."),
           what: str = typer.Option("labels,predicted,tags", help="xmp: which names become keywords."),
           min_confidence: Optional[float] = typer.Option(None, help="xmp: leave out predictions below this."),
           prefix: str = typer.Option("organizer", help="xmp: keyword parent (organizer|sunflower); '' for none."),
           dry_run: bool = typer.Option(False, "--dry-run", help="xmp: list the files, write nothing."),
           remove: bool = typer.Option(False, "--remove", help="xmp: take our keywords out again."),
           link: str = typer.Option("symbolic", help="folders: symbolic, hard or copy.")):
    """Export path, cluster, label, prediction and confidence of every image (csv, json), as XMP
    sidecars for photo managers, or as one folder per label."""
    if format in ("xmp", "folders"):
        from organizer.cli.interop import export_interop

        return export_interop(open_library(store), format, out, beside_originals=beside_originals, naming=naming,
                              what=what, min_confidence=min_confidence, prefix=prefix, dry_run=dry_run,
                              remove=remove, link=link)
    if out is None:
        fail(f"--format {format} needs --out FILE")
    n = open_library(store).export(format, out)
    typer.echo(f"wrote {n} rows to {out}")


@app.command()
@guarded
def status(store: Optional[str] = StoreOpt, errors: bool = typer.Option(False, "--errors")):
    """What the store holds."""
    lib = open_library(store)
    info = dataclasses.asdict(lib.status())
    model = info.pop("model")
    for k, v in info.items():
        typer.echo(f"{k:>12}: {v}")
    if model:
        typer.echo(f"{'model':>12}: {model['id']} ({model['n_labels']} labeled, accuracy {model['accuracy']})")
    if errors:
        for path, error in lib.errors():
            typer.echo(f"{path}: {error}")


@app.command()
def ui(store: Optional[str] = StoreOpt, port: int = typer.Option(8501, help="Port on 127.0.0.1."),
       host: str = typer.Option("127.0.0.1", help="Address to serve on (keep it local unless you mean it).")):
    """Open the app in the browser: name clusters, fix them, train, review."""
    import os
    import subprocess
    from pathlib import Path

    from organizer.store import default_store_dir

    app_file = Path(__file__).resolve().parents[1] / "app" / "app.py"
    if not app_file.exists():
        fail(f"the app's files are missing from the installed package ({app_file}): reinstall organizer")
    store_dir = str(Path(store).expanduser().resolve()) if store else str(default_store_dir())
    typer.echo(f"organizer app: http://{host}:{port}  (store {store_dir}; Ctrl+C to stop)")
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_file), "--server.address", host,
           "--server.port", str(port), "--server.enableXsrfProtection", "true", "--server.enableCORS", "true",
           "--browser.gatherUsageStats", "false", "--server.maxUploadSize", "20", "--server.headless", "true", "--client.toolbarMode", "viewer",
           "--", "--store", store_dir]
    env = {**os.environ, "ORGANIZER_STORE": store_dir}
    if os.name == "posix":  # become the server: a signal or kill meant for `organizer ui` reaches it, no orphan
        sys.stdout.flush()
        os.execve(sys.executable, cmd, env)
    try:
        raise typer.Exit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        raise typer.Exit(0)
