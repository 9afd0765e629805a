"""A plain (non-editable) install works: the wheel carries the app, so `organizer ui` serves it and
`python -m organizer` runs, from a fresh venv that borrows only the heavy dependencies."""
from __future__ import annotations

import os
import site
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support import ROOT, free_port


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("organizer-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    new_site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                            text=True).strip())
    # the test venv's packages come after the new venv's own, as plain paths: its .pth files (among
    # them the editable install of this checkout) are not run, so `organizer` can only be the wheel's
    (new_site / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(new_site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return py, tmp


def test_python_m_organizer_runs_from_the_wheel(installed):
    py, tmp = installed
    where = subprocess.check_output([str(py), "-c", "import organizer; print(organizer.__file__)"], text=True,
                                    cwd=tmp).strip()
    assert str(tmp) in where and str(ROOT) not in where, where
    out = subprocess.run([str(py), "-m", "organizer", "--help"], capture_output=True, text=True, cwd=tmp, timeout=60)
    assert out.returncode == 0 and "cluster" in out.stdout and "ui" in out.stdout, out.stderr


def test_organizer_ui_serves_the_app_from_the_wheel(installed, tmp_path):
    py, tmp = installed
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([str(py), "-m", "organizer", "ui", "--store", str(tmp_path / "store"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline, health = time.time() + 90, None
        while time.time() < deadline and proc.poll() is None:
            try:
                health = urllib.request.urlopen(base + "/_stcore/health", timeout=5).read()
                break
            except OSError:
                time.sleep(0.5)
        assert health == b"ok", f"the app did not come up: {proc.poll()}"
        page = urllib.request.urlopen(base + "/", timeout=10).read().decode()
        assert "<html" in page.lower()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "run from a source checkout" not in out and "missing from the installed package" not in out, out
    assert str(tmp) in out or "organizer app:" in out, out
