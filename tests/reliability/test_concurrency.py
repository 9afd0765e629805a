"""14. A reader (the app) and a writer (the CLI) in two processes: no 'database is locked',
and every read sees a consistent state."""
from __future__ import annotations

import subprocess
import sys
import textwrap

WRITER = textwrap.dedent("""
    import sys
    from organizer.library import Library
    lib = Library(sys.argv[1], create=False)
    ids = lib.store.present_image_ids()
    for round in range(60):
        # relabel every image in one transaction: readers must see all-old or all-new
        lib.store.set_labels(ids, f"name{round % 2}", "manual")
    print("writer done")
""")

READER = textwrap.dedent("""
    import sys
    from organizer.library import Library
    lib = Library(sys.argv[1], create=False)
    seen = set()
    for _ in range(300):
        names = set(lib.store.labels().values())
        assert len(names) <= 1, names  # a half-applied relabel would show two names
        seen |= names
        lib.clusters()
    print("reader done", sorted(seen))
""")


def test_reader_and_writer_processes(store_copy):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store_copy)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(store_copy)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    w_out, w_err = writer.communicate(timeout=300)
    r_out, r_err = reader.communicate(timeout=300)
    assert writer.returncode == 0, w_err
    assert reader.returncode == 0, r_err
    assert "locked" not in w_err + r_err
    assert "writer done" in w_out and "reader done" in r_out
