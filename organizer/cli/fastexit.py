"""Leaving the process without the interpreter's teardown, once a command's work is complete.

After `organizer index` has committed and closed the store and printed its summary, a normal exit
still spends time freeing what the command's modules leave behind (about 1 s with Ray, Ray Data,
pandas and pyarrow; benchmarks/README.md): garbage collection and destructors whose only effect is
memory the OS takes back anyway. Both engines use it. A command that asks for it (`request`) ends instead with the exit
handlers (Ray's shutdown among them), flushed output and `os._exit`. Only `main()`, the process's
entry point, does that: an application calling the Typer app in its own process keeps running."""
from __future__ import annotations

_requested = False


def request() -> None:
    """Call only when everything the command writes is committed and closed."""
    global _requested
    _requested = True


def leave(code) -> None:
    """Exit now when a command asked for it and ended well; else return (a normal exit follows)."""
    import atexit
    import os
    import sys
    import threading

    if not _requested or code not in (0, None):
        return
    # A thread still working (not a daemon) would be joined by a normal exit: let that happen.
    if any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    run_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's: what a normal exit runs
    if run_handlers is None:
        return
    run_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it anyway
            pass
    os._exit(0)
