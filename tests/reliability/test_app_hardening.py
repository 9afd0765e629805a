"""17. App hardening: `organizer ui` serves on 127.0.0.1 only, with XSRF protection on, an
upload size limit and usage statistics off. Checked on the real server, without a browser.

Images are served by id only, and `../`, paths and unknown ids are refused: see
tests/ui/test_ui_bad_input.py (test_image_parameter_must_be_a_known_id and the tests beside it)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support import ROOT, free_port

from .helpers import cli_env

LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net/tcp{,6} write them
MAX_UPLOAD_MB = 50                                          # streamlit's own default is 200


def listeners(port: int) -> list[str]:
    """Local addresses (hex, as the kernel writes them) of the sockets listening on `port`."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                out.append(addr)
    return out


def other_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (from the kernel's routing table)."""
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return []
    found = set()
    for prev, line in zip(lines, lines[1:]):
        if "/32 host LOCAL" in line:
            addr = prev.split()[-1]
            if not addr.startswith("127."):
                found.add(addr)
    return sorted(found)


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4: the parent's pid
                out.append(int(entry))
    return out


def options(cmdline: list[str]) -> dict[str, str]:
    return {a: b for a, b in zip(cmdline, cmdline[1:]) if a.startswith("--server.") or a.startswith("--browser.")}


def test_ui_is_local_with_xsrf_upload_limit_and_no_stats(tmp_path):
    pytest.importorskip("streamlit", reason="streamlit is not installed (organizer[ui])")
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from organizer.cli import main; main()", "ui",
                                 "--store", str(tmp_path / "store"), "--port", str(port)],  # default host
                                cwd=ROOT, env=cli_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = urllib.request.urlopen(base + "/_stcore/health", timeout=10)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        assert health is not None and health.status == 200, log.read_text()
        assert health.read().strip() == b"ok"

        # 127.0.0.1 only: every listening socket on the port is a loopback one (not 0.0.0.0 or ::)
        bound = listeners(port)
        assert bound and set(bound) <= LOOPBACK, bound
        for addr in other_addresses():  # and from the machine's other addresses nothing answers
            with socket.socket() as s:
                s.settimeout(5)
                assert s.connect_ex((addr, port)) != 0, f"the app answers on {addr}"

        # XSRF on: the server hands out the token cookie, and an upload without the token is refused
        assert "_streamlit_xsrf=" in (health.headers.get("Set-Cookie") or ""), dict(health.headers)
        put = urllib.request.Request(base + "/_stcore/upload_file/no-session/no-file", data=b"x" * 64, method="PUT")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(put, timeout=10)
        assert refused.value.code == 403, refused.value.read()

        # the options the server was started with (its command line): local, XSRF, a small upload
        # limit, no usage statistics. `organizer ui` becomes the server (exec), so no orphan is left
        servers = [c for c in [proc.pid, *children(proc.pid)]
                   if b"streamlit" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(servers) == 1, servers
        opts = options(Path(f"/proc/{servers[0]}/cmdline").read_bytes().decode().split("\0"))
        assert opts["--server.address"] == "127.0.0.1"
        assert opts["--server.enableXsrfProtection"] == "true"
        assert 0 < int(opts["--server.maxUploadSize"]) <= MAX_UPLOAD_MB
        assert opts["--browser.gatherUsageStats"] == "false"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and the streamlit server it started
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
