"""The heatmap toggle in a real browser (headless Debian Chromium): Predictions with a trained
model, toggle on, the overlays are drawn and the maps land in the store's cache."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from test_ui_browser import ROOT, Page, _free_port, browser  # noqa: F401  (browser is a fixture)

pytestmark = pytest.mark.browser


@pytest.fixture
def trained_server(trained_copy, tmp_path):
    port = _free_port()
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.enableXsrfProtection", "true", "--browser.gatherUsageStats", "false",
         "--server.headless", "true", "--", "--store", str(trained_copy)],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError("the app did not start:\n" + (tmp_path / "streamlit.log").read_text())
                time.sleep(0.3)
        yield url, trained_copy
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_heatmap_toggle_in_a_browser(browser, trained_server):  # noqa: F811  (browser first: it may skip)
    url, store = trained_server
    page = Page(browser)
    browser.get(url + "/predictions")
    page.wait_text("Show heatmaps")
    page.idle()
    from organizer import curation
    from organizer.library import Library

    lib = Library(store)
    expected = min(curation.prediction_counts(lib.store)[0][1], 48)  # the first label's images, one page
    lib.close()
    browser.find_element(page.By.CSS_SELECTOR, ".st-key-explain-pred label").click()
    overlays = lambda: browser.find_elements(page.By.CSS_SELECTOR, ".st-key-grid-explain img")  # noqa: E731
    page.wait_for(lambda: len(overlays()) == expected, 120, f"{expected} heatmaps")
    page.idle(120)
    assert len(list((store / "explain").rglob("*.npz"))) == expected
    page.shot("explain-predictions")
