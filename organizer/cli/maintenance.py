"""CLI commands that look after the store itself (repair, checks).

Registered on the main `app` when `organizer.cli` imports this module."""
from __future__ import annotations

import json
from typing import Optional

import typer

from organizer.cli.base import StoreOpt, app, guarded, open_library


@app.command()
@guarded
def repair(store: Optional[str] = StoreOpt,
           workers: Optional[int] = typer.Option(None, help="Decode processes for re-embedding."),
           as_json: bool = typer.Option(False, "--json")):
    """Check the store's files; re-embed images of damaged vector files, rebuild caches."""
    lib = open_library(store)
    result = lib.repair(workers=workers)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=1))
    else:
        for line in result.lines():
            typer.echo(line)
    if result.images_pending:
        raise typer.Exit(1)
