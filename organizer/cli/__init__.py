"""The `organizer` command line. Thin: parse, call `Library`, print.

Each module registers its commands on the one Typer app of base.py; importing them here makes the
whole command set. Heavy libraries are imported inside commands, so `organizer --help` is instant."""
from __future__ import annotations

# the order of these imports is the order of `organizer --help`: the loop first, then the rest
from organizer.cli import core, learning, maintenance, tags, interop, history, groups, explain  # noqa: F401,I001
from organizer.cli.base import app


def main():
    from organizer.cli import fastexit

    try:
        app(prog_name="organizer")
    except SystemExit as e:
        fastexit.leave(e.code)  # returns unless a command asked to skip the interpreter's teardown
        raise
