"""Commands that fix groups and answer review items: split (along the group tree), move (or drop to unsorted), merge, answer."""
from __future__ import annotations

from typing import List, Optional

import typer

from organizer.cli.base import StoreOpt, app, guarded, open_library


@app.command()
@guarded
def split(cluster_id: int = typer.Argument(..., help="A cluster id from `organizer clusters`."),
          store: Optional[str] = StoreOpt):
    """Split a cluster into its sub-groups (from the group tree; re-clusters it only if it has none)."""
    lib = open_library(store)
    parts = lib.split_cluster(cluster_id)
    sizes = {c.id: c.size for c in lib.clusters(samples=0)}
    typer.echo(f"cluster {cluster_id} is now {len(parts)} clusters: " +
               ", ".join(f"{p} ({sizes.get(p, 0)} images)" for p in parts))


@app.command()
@guarded
def move(paths: List[str] = typer.Argument(..., help="Paths relative to the indexed folder."),
         to: int = typer.Option(..., "--to", help="The cluster id they belong to (-1: unsorted, no name: a drop)."),
         store: Optional[str] = StoreOpt):
    """Move images into another cluster; they take its name (or lose theirs if it has none)."""
    lib = open_library(store)
    n = lib.move_to_cluster(lib.resolve_paths(paths), to)
    typer.echo(f"moved {n} images to " + ("unsorted" if to < 0 else f"cluster {to}"))


@app.command()
@guarded
def merge(cluster_ids: List[int] = typer.Argument(..., help="Two or more cluster ids."),
          name: Optional[str] = typer.Option(None, "--name", help="Name the merged cluster too."),
          store: Optional[str] = StoreOpt):
    """Merge clusters into the largest of them (names stay on the images)."""
    target = open_library(store).merge_clusters(cluster_ids, name)
    typer.echo(f"merged clusters {', '.join(map(str, cluster_ids))} into cluster {target}")


@app.command()
@guarded
def answer(paths: List[str] = typer.Argument(..., help="Images from `organizer review`."),
           as_: str = typer.Option(..., "--as", help="The right name: the model's guess confirms it, another corrects it."),
           store: Optional[str] = StoreOpt):
    """Answer review items: a label for the next training ('accepted' or, for a correction, 'manual')."""
    lib = open_library(store)
    n = lib.answer(lib.resolve_paths(paths), as_)
    typer.echo(f"answered {n} images: {as_!r}")
