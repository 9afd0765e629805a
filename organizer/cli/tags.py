"""CLI commands for multi-label tags and duplicate finding.

Registered on the main `app` when `organizer.cli` imports this module."""
from __future__ import annotations

import json
from typing import List, Optional

import typer

from organizer.cli.base import app, fail, guarded, open_library, StoreOpt  # noqa: F401


# -- duplicates ---------------------------------------------------------------------------
@app.command()
@guarded
def duplicates(store: Optional[str] = StoreOpt, as_json: bool = typer.Option(False, "--json"),
               threshold: Optional[float] = typer.Option(
                   None, help="Largest cosine distance between vectors of near-copies (default 0.35)."),
               max_hash_distance: Optional[int] = typer.Option(
                   None, help="Most differing perceptual-hash bits of 64 (default 12)."),
               max_colour_change: Optional[float] = typer.Option(
                   None, help="Largest colour change (RGB units) any eighth-by-eighth part of a near-copy may "
                              "show (default 20): more means a recoloured or retouched variant, kept apart."),
               out: Optional[str] = typer.Option(None, "--out", help="Write the groups to FILE (.csv or .json)."),
               move_to: Optional[str] = typer.Option(
                   None, "--move-to", help="Move every copy but the suggested one into DIR (outside the library).")):
    """Exact and near-duplicate images, in groups, the copy worth keeping first. Nothing is deleted."""
    lib = open_library(store)
    kwargs = {}
    if threshold is not None:
        kwargs["threshold"] = threshold
    if max_hash_distance is not None:
        kwargs["max_hash_distance"] = max_hash_distance
    if max_colour_change is not None:
        kwargs["max_colour_change"] = max_colour_change
    groups = lib.duplicates(**kwargs)
    if out:
        path = lib.write_duplicates(groups, out)
        typer.echo(f"wrote {len(groups)} groups to {path}", err=as_json)
    if move_to:
        report = lib.move_copies(groups, move_to)
        for path, why in report["skipped"]:
            typer.echo(f"  kept {path}: {why}", err=True)
        typer.echo(f"moved {len(report['moved'])} copies to {move_to}; {len(report['skipped'])} left in place",
                   err=as_json)
    if as_json:
        typer.echo(json.dumps([g.to_dict() for g in groups], indent=1))
        return
    if not groups:
        typer.echo("no duplicates found")
        return
    n_files = sum(len(g.members) for g in groups)
    typer.echo(f"{len(groups)} groups, {n_files} files, {n_files - len(groups)} copies beyond the one to keep")
    for g in groups:
        typer.echo(f"group {g.group} ({g.kind}):")
        for m in g.members:
            mark = "keep" if m.best else "copy"
            extra = "" if m.best or g.kind == "exact" else f"  similarity {m.similarity:.3f} match {m.match:.3f} colour change {m.colour_change:.0f}"
            typer.echo(f"  {mark}  {m.path}  {m.width}x{m.height}  {m.size} bytes{extra}")


# -- tags ---------------------------------------------------------------------------------
@app.command()
@guarded
def tag(paths: List[str] = typer.Argument(..., help="Paths relative to the indexed folder."),
        add: Optional[List[str]] = typer.Option(None, "--add", help="Tag to add (repeatable)."),
        remove: Optional[List[str]] = typer.Option(None, "--remove", help="Tag to remove (repeatable)."),
        store: Optional[str] = StoreOpt):
    """Add or remove tags on images; an image can carry any number of tags besides its label."""
    if not add and not remove:
        fail("say what to do: --add TAG and/or --remove TAG")
    lib = open_library(store)
    ids = list(dict.fromkeys(lib.resolve_paths(paths)))
    if add:
        n = lib.add_tags(ids, add)
        typer.echo(f"added {', '.join(map(repr, add))} to {len(ids)} images ({n} new)")
    if remove:
        n = lib.remove_tags(ids, remove)
        typer.echo(f"removed {', '.join(map(repr, remove))}: {n} taggings")


@app.command()
@guarded
def tags(store: Optional[str] = StoreOpt, as_json: bool = typer.Option(False, "--json")):
    """Tags with how many images carry them, how many are predicted, and the tag model's metrics."""
    rows = open_library(store).tag_summary()
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        typer.echo("no tags yet: `organizer tag PATH... --add TAG`")
        return
    width = max(len(r["tag"]) for r in rows)
    typer.echo(f"{'tag':<{width}}  images  predicted  precision  recall     F1  threshold")
    fmt = lambda x, w: f"{x:{w}.3f}" if x is not None else f"{'-':>{w}}"  # noqa: E731
    for r in rows:
        typer.echo(f"{r['tag']:<{width}}  {r['images']:6d}  {r['predicted']:9d}  {fmt(r['precision'], 9)}  "
                   f"{fmt(r['recall'], 6)}  {fmt(r['f1'], 5)}  {fmt(r['threshold'], 9)}")


@app.command("train-tags")
@guarded
def train_tags(store: Optional[str] = StoreOpt, as_json: bool = typer.Option(False, "--json"),
               untagged_negative: bool = typer.Option(
                   False, "--untagged-negative", help="Count images without any tag as lacking every tag.")):
    """One model per tag (one-vs-rest), each with the threshold of best cross-validated F1."""
    m = open_library(store).train_tags(untagged_negative=untagged_negative)
    if as_json:
        typer.echo(json.dumps(m, indent=1))
        return
    typer.echo(f"tag model {m['model_id']}: {len(m['per_tag'])} tags over {m['n_train']} images "
               "(out-of-fold precision, recall and F1 at each tag's threshold)")
    width = max(len(t) for t in m["per_tag"])
    typer.echo(f"{'tag':<{width}}  precision  recall     F1  threshold  with  without")
    for t, s in m["per_tag"].items():
        typer.echo(f"{t:<{width}}  {s['precision']:9.3f}  {s['recall']:6.3f}  {s['f1']:5.3f}  {s['threshold']:9.3f}  "
                   f"{s['positives']:4d}  {s['negatives']:7d}")
    for t, why in m["skipped"].items():
        typer.echo(f"  skipped {t}: {why}", err=True)


@app.command("predict-tags")
@guarded
def predict_tags(store: Optional[str] = StoreOpt):
    """Predict tags for every image with the current tag model and store them."""
    counts = open_library(store).predict_tags()
    typer.echo("predicted tags: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
