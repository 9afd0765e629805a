"""organizer.cli.fastexit: a command that asks for it ends with its exit handlers and flushed
output but without the interpreter's teardown; anything else exits as usual."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from support import ROOT

# A process shaped like `organizer`: main() around a command that raises SystemExit. An object
# held by a module global is freed (its __del__ runs) only by the interpreter's teardown.
SCRIPT = textwrap.dedent("""
    import atexit, sys, threading, time
    from pathlib import Path
    from organizer.cli import fastexit

    out, request, code, thread = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4] == "1"

    class FreedAtTeardown:
        def __del__(self):
            (out / "teardown").write_text("ran")

    held = FreedAtTeardown()
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    if thread:  # a thread still working when the command ends
        threading.Thread(target=time.sleep, args=(0.5,)).start()
    print("summary line")  # a pipe: block-buffered, lost unless flushed
    print("a note", file=sys.stderr)
    if request:
        fastexit.request()
    try:
        raise SystemExit(code)
    except SystemExit as e:
        fastexit.leave(e.code)
        raise
""")


def run(tmp_path, *, request: bool, code: int = 0, thread: bool = False):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(int(request)), str(code), str(int(thread))],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    ran = {name for name in ("atexit", "teardown") if (tmp_path / name).exists()}
    return proc, ran


def test_requested_exit_skips_teardown_keeps_handlers_and_output(tmp_path):
    proc, ran = run(tmp_path, request=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "summary line\n" and proc.stderr == "a note\n"
    assert ran == {"atexit"}  # the exit handlers ran (Ray's shutdown is one), the teardown did not


@pytest.mark.parametrize("case", ["not requested", "failed", "thread alive"])
def test_other_exits_are_normal(tmp_path, case):
    proc, ran = run(tmp_path, request=case != "not requested", code=3 if case == "failed" else 0,
                    thread=case == "thread alive")
    assert proc.returncode == (3 if case == "failed" else 0), proc.stderr
    assert proc.stdout == "summary line\n"
    assert ran == {"atexit", "teardown"}  # the control: this is what a normal exit does
