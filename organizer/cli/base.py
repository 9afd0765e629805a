"""What every command module shares: the Typer app, common options, and turning errors into one line."""
from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="Turn a folder of unlabeled images into named groups, then into a classifier.")

StoreOpt = typer.Option(None, "--store", "-s", envvar="ORGANIZER_STORE",
                        help="Store directory (default: ~/.local/share/organizer/default).")

EngineOpt = typer.Option("local", "--engine", help="local (this machine) or ray (a Ray cluster: docs/SCALING.md).")
RayAddressOpt = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                             help="With --engine ray: the cluster's head, HOST:PORT (default: one started on this "
                                  "machine with `ray start`, else a local one).")


def fail(message: str, code: int = 2):
    typer.echo(f"organizer: error: {message}", err=True)
    raise typer.Exit(code)


def open_library(store, *, create: bool = False):
    from organizer.library import Library
    from organizer.store import StoreError

    try:
        return Library(store, create=create)
    except StoreError as e:
        fail(str(e))


def guarded(fn):
    """Turn the errors a user can act on into one line on stderr and a non-zero exit."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from organizer.embed import BackboneError
        from organizer.store import StoreError

        try:
            return fn(*args, **kwargs)
        except (StoreError, BackboneError) as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail("interrupted; everything written so far is kept and the next run resumes", 130)
    return wrapper


def progress_bar(description: str):
    """Redrawn by `progress_update`, not by rich's refresh thread: `organizer index` forks its
    decode processes only while it has a single thread (indexer.worker_start_method)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=stderr_console(), transient=True, auto_refresh=False)


def progress_update(bar, task, every: float = 0.1):
    """A progress callback (done, total) that redraws the bar at most every `every` seconds."""
    import time

    last = [0.0]

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)
        now = time.monotonic()
        if now - last[0] >= every or done >= total:
            last[0] = now
            bar.refresh()
    return update


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)
