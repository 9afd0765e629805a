"""End to end in a real browser: the app as `organizer ui` starts it, driven by Selenium in
headless Debian Chromium. Screenshots land in test-artifacts/ (git-ignored)."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.browser


@contextlib.contextmanager
def app_server(store, tmp_path, *options):
    """The app on a free port against `store`, started the way `organizer ui` does; yields its URL."""
    port = free_port()
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "organizer" / "app" / "app.py"), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.enableXsrfProtection", "true", "--browser.gatherUsageStats", "false",
         *options, "--server.headless", "true", "--", "--store", str(store)],
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
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def server(ui_copy, tmp_path):
    """The app against a copy of the sample store."""
    with app_server(ui_copy, tmp_path, "--server.maxUploadSize", "20") as url:
        yield url, ui_copy


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("no browser: install Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver) to run the end-to-end test")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", f"--user-data-dir={tmp_path / 'chrome-profile'}",
                "--window-size=1400,1100"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """Small waits around Streamlit's reruns: wait for text, click by label, screenshot the whole page."""

    def __init__(self, driver):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.d, self.By, self.Wait = driver, By, WebDriverWait

    def wait_for(self, test, timeout=60, what="condition"):
        return self.Wait(self.d, timeout, poll_frequency=0.2).until(lambda d: test(), message=f"waiting for {what}")

    def body(self) -> str:
        return self.d.find_element(self.By.TAG_NAME, "body").text

    def idle(self, timeout=60):
        """Streamlit shows a 'running' widget while a script runs; wait until it is gone."""
        time.sleep(0.4)
        self.wait_for(lambda: not self.d.find_elements(self.By.CSS_SELECTOR, "[data-testid='stStatusWidget']"),
                      timeout, "the app to finish running")

    def wait_text(self, text, timeout=60):
        self.wait_for(lambda: text in self.body(), timeout, repr(text))

    def click_button(self, label):
        xpath = f"//button[normalize-space(.)={_xpath_literal(label)}]"
        button = self.wait_for(lambda: next(iter(self.d.find_elements(self.By.XPATH, xpath)), None), what=label)
        button.click()

    def click_link(self, label):
        xpath = f"//a[contains(normalize-space(.), {_xpath_literal(label)})]"
        link = self.wait_for(lambda: next(iter(self.d.find_elements(self.By.XPATH, xpath)), None), what=label)
        link.click()

    def shot(self, name):
        ARTIFACTS.mkdir(exist_ok=True)
        height = self.d.execute_script(
            "const m = document.querySelector('[data-testid=\"stMain\"]'); return m ? m.scrollHeight : 1100")
        self.d.set_window_size(1400, min(max(1100, int(height) + 120), 6000))
        time.sleep(0.8)
        self.d.save_screenshot(str(ARTIFACTS / f"{name}.png"))
        self.d.set_window_size(1400, 1100)


def _xpath_literal(text: str) -> str:
    return f"'{text}'" if "'" not in text else "concat('" + "', \"'\", '".join(text.split("'")) + "')"


def test_name_train_predict_in_a_browser(browser, server):  # browser first: it may skip
    from selenium.webdriver.common.keys import Keys

    from organizer.library import Library

    url, store = server
    page = Page(browser)
    browser.get(url)
    page.wait_text("groups named")
    page.idle()
    page.shot("01-clusters")

    lib = Library(store)
    infos = [c for c in lib.clusters() if c.id >= 0]
    assert infos and all(c.suggestions for c in infos)
    # the first group by typing a name (Enter submits), every other one by clicking its first suggestion
    first = infos[0]
    box = browser.find_element(page.By.CSS_SELECTOR, f".st-key-name-{first.id} input")
    box.send_keys("my first group", Keys.ENTER)
    page.wait_text("named “my first group”")
    page.idle()
    expected = {first.id: "my first group"}
    for info in infos[1:]:
        name = info.suggestions[0][0]
        browser.find_element(page.By.CSS_SELECTOR, f".st-key-sug-{info.id}-0 button").click()
        page.wait_text(f"named “{name}”")
        page.idle()
        expected[info.id] = name
    for cluster, name in expected.items():
        assert {lib.store.labels().get(i) for i in lib.cluster_members(cluster)} == {name}
    assert f"{len(infos)} of {len(infos)} groups named" in page.body()
    page.shot("02-named")

    page.click_button("Next: train a classifier →")
    page.wait_text("named images")
    page.click_button("Train classifier")
    page.wait_text("Accuracy", timeout=120)
    page.idle()
    body = page.body()
    assert "Macro-F1" in body and "Confusion matrix" in body
    page.shot("03-trained")

    page.click_link("Predictions")
    page.wait_text("Download CSV")
    page.idle()
    body = page.body()
    counts_line = body.split("Predicted label")[0]
    assert sum(name in counts_line for name in set(expected.values())) >= min(2, len(set(expected.values())))
    assert "Confidence at least" in body and "images predicted" in body
    assert lib.store.db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 160
    page.shot("04-predictions")

    page.click_link("Map")
    page.wait_for(lambda: browser.find_elements(page.By.CSS_SELECTOR, ".js-plotly-plot .nsewdrag"), what="the map")
    page.idle()
    page.shot("05-map")


def _no_exception(page):
    body = page.body()
    assert "Traceback" not in body and "StreamlitDuplicateElementKey" not in body and "Error:" not in body, body[:2000]


@pytest.mark.slow  # about 2 minutes on a 2-core machine (a model is trained, every cell clicked)
def test_walk_through_merge_undo_cells_review_map(browser, server):
    """The day-of-use walk-through (issue 13): merge and undo it, every confusion cell, a review
    answer and its undo, a lasso on the map; the store is checked after each step."""
    from selenium.webdriver.common.action_chains import ActionChains

    from organizer.library import Library

    url, store = server
    lib = Library(store)
    infos = [c for c in lib.clusters() if c.id >= 0]
    for c in infos:  # named before the browser opens: the first test covers naming by click
        lib.name_cluster(c.id, c.suggestions[0][0] if c.suggestions else f"group {c.id}")
    page = Page(browser)
    browser.get(url)
    page.wait_text("groups named")
    page.idle()

    a, b = infos[0].id, infos[1].id
    for c in (a, b):
        browser.find_element(page.By.CSS_SELECTOR, f".st-key-merge-{c} label").click()
        page.idle()
    page.click_button("Merge the 2 selected clusters")
    page.wait_text("Merged clusters")
    page.idle()
    _no_exception(page)
    assert len({c.id for c in lib.clusters()} & {a, b}) == 1
    page.shot("10-merged")
    browser.find_element(page.By.CSS_SELECTOR, f".st-key-undo-{lib.history(1)[0].id} button").click()
    page.wait_text("Undid 1 change")
    page.idle()
    assert {a, b} <= {c.id for c in lib.clusters()}, "the merge is undone"
    page.shot("11-merge-undone")

    page.click_link("Train")
    page.wait_text("named images")
    page.click_button("Train classifier")
    page.wait_text("Accuracy", timeout=180)
    page.idle()
    cells = browser.find_elements(page.By.CSS_SELECTOR, "[data-testid='stVegaLiteChart'] path[role='graphics-symbol']")
    if not cells:
        cells = browser.find_elements(page.By.CSS_SELECTOR, "[data-testid='stVegaLiteChart'] .mark-rect path")
    n = len(lib.store.current_model()["classes"].split(","))
    assert len(cells) >= n * n, len(cells)
    for k in range(n * n):
        cells = browser.find_elements(page.By.CSS_SELECTOR,
                                      "[data-testid='stVegaLiteChart'] .mark-rect path") or cells
        ActionChains(browser).move_to_element(cells[k]).click().perform()
        page.idle()
        _no_exception(page)
    page.shot("12-cells")

    page.click_link("Review")
    page.wait_text("Model says")
    page.idle()
    _no_exception(page)
    assert "Nothing left to review" not in page.body()
    before = lib.store.labels()
    browser.find_element(page.By.CSS_SELECTOR, "[class*='st-key-ok'] button").click()
    page.wait_text("Confirmed")
    page.idle()
    assert lib.history(1)[0].kind == "review"
    page.shot("13-review")
    browser.find_element(page.By.CSS_SELECTOR, f".st-key-undo-{lib.history(1)[0].id} button").click()
    page.wait_text("Undid 1 change")
    page.idle()
    assert lib.store.labels() == before

    page.click_link("Map")
    plot = page.wait_for(lambda: next(iter(browser.find_elements(page.By.CSS_SELECTOR, ".js-plotly-plot .nsewdrag")),
                                      None), what="the map")
    page.idle()
    w, h = plot.size["width"], plot.size["height"]
    chain = ActionChains(browser).move_to_element_with_offset(plot, -w // 3, -h // 3).click_and_hold()
    for dx, dy in [(w // 3, 0), (w // 3, h // 3), (0, h // 3), (-w // 3, 0)]:
        chain = chain.move_by_offset(dx, dy)
    chain.release().perform()
    page.wait_text("images selected")
    page.idle()
    _no_exception(page)
    page.shot("14-map-lasso")
