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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=stderr_console(), transient=True)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)
