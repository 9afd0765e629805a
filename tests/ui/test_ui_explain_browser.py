"""The heatmap toggle in a real browser (headless Debian Chromium): Predictions with a trained
model, toggle on, the overlays are drawn and the maps land in the store's cache."""
from __future__ import annotations

import pytest

from test_ui_browser import Page, app_server, browser  # noqa: F401  (browser is a fixture)

# Slow: in the full suite its cache check failed once while passing alone (not understood yet);
# the toggle itself is covered in the default run by tests/ui/test_ui_explain.py (AppTest).
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def trained_server(trained_copy, tmp_path):
    with app_server(trained_copy, tmp_path) as url:
        yield url, trained_copy


def test_heatmap_toggle_in_a_browser(browser, trained_server):  # noqa: F811  (browser first: it may skip)
    url, store = trained_server
    page = Page(browser)
    browser.get(url + "/predictions")
    page.wait_text("Show heatmaps")
    page.idle()
    from organizer.library import Library

    lib = Library(store)
    expected = min(lib.prediction_counts()[0][1], 48)  # the first label's images, one page
    lib.close()
    browser.find_element(page.By.CSS_SELECTOR, ".st-key-explain-pred label").click()
    overlays = lambda: browser.find_elements(page.By.CSS_SELECTOR, ".st-key-grid-explain img")  # noqa: E731
    page.wait_for(lambda: len(overlays()) == expected, 120, f"{expected} heatmaps")
    page.idle(120)
    assert len(list((store / "explain").rglob("*.npz"))) == expected
    page.shot("explain-predictions")
