"""Every page through AppTest on a 10,000-image library (cifar10-test, indexed and clustered through
the CLI), before and after naming and training, with first-screen timings printed beside those of
sample_data measured in the same run (timings are reported, never asserted: see benchmarks/)."""
from __future__ import annotations

import os
import shutil
import statistics
import time

import pytest
from organizer.library import Library

from support import ROOT, SHARED, run_cli

pytestmark = pytest.mark.slow
CIFAR = SHARED / "datasets" / "cifar10-test"
APP = ROOT / "organizer" / "app" / "app.py"
PAGES = ["views/library.py", "views/clusters.py", "views/map.py", "views/search.py", "views/train.py",
         "views/review.py", "views/predictions.py"]
TIMED = ["views/clusters.py", "views/map.py", "views/train.py", "views/review.py"]


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    if not CIFAR.is_dir():
        pytest.skip(f"{CIFAR} is absent (a user's clone has no ../shared)")
    store = tmp_path_factory.mktemp("cifar-store") / "store"
    indexed = os.environ.get("ORGANIZER_TEST_CIFAR_STORE")  # a store of CIFAR already indexed: copied, not re-indexed
    if indexed:
        shutil.copytree(indexed, store, ignore=shutil.ignore_patterns("index.lock"))
    run_cli("index", CIFAR, "--store", store, "--backbone", "efficientnet-lite0", timeout=1800)
    run_cli("cluster", "--store", store, timeout=1800)
    return store


def assert_clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def first_screen(monkeypatch, store, page: str) -> tuple[object, float]:
    """Seconds from a fresh session to the page's first screen (app start, then the page)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ORGANIZER_STORE", str(store))
    at = AppTest.from_file(str(APP), default_timeout=900)  # the map's first layout of 10k images is slow
    start = time.perf_counter()
    at.run()
    at.switch_page(page).run()
    return at, time.perf_counter() - start


def timings(monkeypatch, store, pages, repeat: int = 3, tag: str = "") -> dict[str, float]:
    """Median seconds to each page's first screen; FIRST[page] keeps the first of the runs (a store
    state the app has not seen yet: nothing derived from it is cached)."""
    out = {}
    for page in pages:
        runs = []
        for _ in range(repeat):
            at, seconds = first_screen(monkeypatch, store, page)
            assert_clean(at)
            assert at.title, page
            runs.append(seconds)
        out[page] = statistics.median(runs)
        FIRST[(tag or str(store), page)] = runs[0]
    return out


FIRST: dict = {}


def table(title: str, big: dict, small: dict, big_tag, small_tag) -> str:
    rows = [f"{title}: first screen (s), median of 3 and the first of them (nothing cached yet)",
            f"{'page':<24}{'10k':>8}{'first':>8}{'sample':>8}{'first':>8}{'ratio':>7}"]
    rows += [f"{p:<24}{big[p]:8.2f}{FIRST[(big_tag, p)]:8.2f}{small[p]:8.2f}"
             f"{FIRST[(small_tag, p)]:8.2f}{big[p] / small[p]:7.1f}" for p in big]
    return "\n".join(rows)


def test_every_page_on_ten_thousand_images(monkeypatch, big_store, ui_store, trained_store, name_clusters, capsys):
    lib = Library(big_store)
    assert lib.store.counts()["images"] == 10_000
    lib.close()
    # the map lays itself out once (UMAP of 10k) and caches it: that first view is timed on its own
    at, map_first = first_screen(monkeypatch, big_store, "views/map.py")
    assert_clean(at)
    before = timings(monkeypatch, big_store, PAGES, tag="big-before")
    infos = Library(big_store).clusters(samples=0, tree=True)
    # the Clusters page draws its first screen of cards and every group of groups, never 10k images
    at, _ = first_screen(monkeypatch, big_store, "views/clusters.py")
    assert len([t for t in at.text_input if t.key and t.key.startswith("name-")]) <= 12

    import collections

    lib = Library(big_store)  # cifar's clusters are mixed: each is named after its most common folder
    for c in lib.clusters(samples=100_000):
        if c.id >= 0:
            lib.name_cluster(c.id, collections.Counter(p.split("/")[0] for p in c.sample_paths).most_common(1)[0][0])
    lib.close()
    lib = Library(big_store)
    lib.train()
    lib.close()
    after = timings(monkeypatch, big_store, PAGES, tag="big-after")
    small = timings(monkeypatch, trained_store, TIMED, tag="small-after")
    small_before = timings(monkeypatch, ui_store, TIMED, tag="small-before")
    with capsys.disabled():
        print(f"\n10k store: {len(infos)} clusters and tree nodes; map first layout {map_first:.1f} s")
        print(table("before naming", {p: before[p] for p in TIMED}, small_before, "big-before", "small-before"))
        print(table("named and trained", {p: after[p] for p in TIMED}, small, "big-after", "small-after"))
