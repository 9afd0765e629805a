"""CLI commands for the history of changes and undo.

Registered on the main `app` when `organizer.cli` imports this module."""
from __future__ import annotations

import json
from typing import Optional

import typer

from organizer.cli.base import app, guarded, open_library, StoreOpt  # noqa: F401


def _when(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@app.command()
@guarded
def history(store: Optional[str] = StoreOpt, limit: int = typer.Option(20, "--limit", help="How many entries."),
            all_: bool = typer.Option(False, "--all", help="Also list what was undone."),
            as_json: bool = typer.Option(False, "--json")):
    """The changes made to names, groups and the current model, newest first."""
    entries = open_library(store).history(limit, include_undone=all_)
    if as_json:
        typer.echo(json.dumps([e.__dict__ for e in entries], indent=1))
        return
    if not entries:
        typer.echo("no changes recorded yet")
        return
    for e in entries:
        undone = f"  (undone {_when(e.undone_at)})" if e.undone_at else ""
        typer.echo(f"{e.id:5d}  {_when(e.created_at)}  {e.kind:8}  {e.summary}{undone}")


@app.command()
@guarded
def undo(n: int = typer.Argument(1, help="How many of the last changes to undo."), store: Optional[str] = StoreOpt,
         to: Optional[int] = typer.Option(None, "--to", help="Undo every change from history entry TO on.")):
    """Undo the last N changes (names, moves, merges, splits, re-groups, review answers, model switches)."""
    done = open_library(store).undo(n, back_to=to)
    for e in done:
        typer.echo(f"undid {e.id}: {e.summary}")
