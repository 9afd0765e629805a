"""Commands on the group tree: split a cluster along it (no re-clustering)."""
from __future__ import annotations

from typing import Optional

import typer

from organizer.cli.base import StoreOpt, app, guarded, open_library


@app.command()
@guarded
def split(cluster_id: int = typer.Argument(..., help="A cluster id from `organizer clusters`."),
          store: Optional[str] = StoreOpt):
    """Split a cluster into its sub-groups (from the group tree; re-clusters it only if it has none)."""
    from organizer.curation import split_cluster

    lib = open_library(store)
    parts = split_cluster(lib, cluster_id)
    sizes = {c.id: c.size for c in lib.clusters(samples=0)}
    typer.echo(f"cluster {cluster_id} is now {len(parts)} clusters: " +
               ", ".join(f"{p} ({sizes.get(p, 0)} images)" for p in parts))
