"""CLI commands of the learning loop (model versions, tags, label issues, duplicates).

Registered on the main `app` when `organizer.cli` imports this module."""
from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Optional

import typer

from organizer.cli.base import app, fail, guarded, open_library, StoreOpt  # noqa: F401


@app.command()
@guarded
def models(store: Optional[str] = StoreOpt,
           use: Optional[int] = typer.Option(None, "--use", help="Make model ID current (rollback or roll forward)."),
           as_json: bool = typer.Option(False, "--json")):
    """Model versions: id, created, labels, classes, accuracy, macro-F1, which one is current."""
    lib = open_library(store)
    if use is not None:
        n = lib.use_model(use)  # stored predictions follow the current model
        typer.echo(f"model {use} is current; re-predicted {n} images")
        return
    versions = lib.models()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(v) for v in versions], indent=1))
        return
    if not versions:
        fail("no trained model yet: run `organizer train` first")
    typer.echo(f"{'':1} {'id':>4}  {'created':16}  {'labels':>6}  {'person':>6}  {'classes':>7}  "
               f"{'accuracy':>8}  {'macro-F1':>8}  {'ECE':>5}")
    for v in versions:
        created = datetime.datetime.fromtimestamp(v.created).strftime("%Y-%m-%d %H:%M")
        fmt = lambda x, w: f"{x:{w}.3f}" if isinstance(x, (int, float)) else f"{'-':>{w}}"  # noqa: E731
        typer.echo(f"{'*' if v.current else ' '} {v.id:4d}  {created:16}  {v.n_labels:6d}  "
                   f"{v.n_person if v.n_person is not None else '-':>6}  {len(v.classes):7d}  "
                   f"{fmt(v.accuracy, 8)}  {fmt(v.macro_f1, 8)}  {fmt(v.ece, 5)}  {v.decision}")


@app.command()
@guarded
def threshold(name: str = typer.Argument(..., help="A class name."),
              value: Optional[float] = typer.Argument(None, help="Confidence in [0, 1]; omit with --clear."),
              clear: bool = typer.Option(False, "--clear", help="Go back to the learned threshold."),
              store: Optional[str] = StoreOpt):
    """Set the confidence below which a prediction of NAME says 'unknown' (applies to every model)."""
    lib = open_library(store)
    if value is None and not clear:
        fail("give a VALUE between 0 and 1, or --clear")
    known = {n for n, _ in lib.label_names()}
    if name not in known and not clear:
        fail(f"no image is labeled {name!r}: thresholds apply to classes the model knows")
    lib.set_class_threshold(name, None if clear else value)
    typer.echo(f"{name}: " + ("learned threshold" if clear else f"unknown below confidence {value:.2f}")
               + " (run `organizer predict` to apply it to stored predictions)")


@app.command("issues")
@guarded
def issues(store: Optional[str] = StoreOpt, limit: int = typer.Option(50, "--limit", help="How many (0: all)."),
           everything: bool = typer.Option(False, "--all", help="Rank every labeled image, not only suspicious ones."),
           as_json: bool = typer.Option(False, "--json")):
    """Labeled images whose name looks wrong, most suspicious first (fix them with `organizer label`)."""
    rows = open_library(store).label_issues(limit or None, everything=everything)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
        return
    if not rows:
        typer.echo("no suspicious labels")
    for r in rows:
        typer.echo(f"{r.score:.3f}\t{r.path}\tlabeled {r.label!r}, looks like {r.suggested!r}\t{r.reason}")
