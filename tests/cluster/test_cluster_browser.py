"""Lab 09 in a real browser: the cluster dashboard draws its plots; changing the scheduler, or stepping
through time, redraws them."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CHROMIUM_ARGS, serve_lab

HEADLINE = "Recomputed in"  # the sentence over the player stating the chosen run's numbers
PLOTS = 4  # GPU map, utilisation/fragmentation, queue length, JCT distribution
SHOTS = Path(os.environ.get("SYSLAB_SCREENSHOTS", "/tmp"))

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """URL of the cluster dashboard served by ``syslab serve --lab cluster``."""
    with serve_lab("cluster", tmp_path / "serve.log") as base:
        yield base + "/cluster"


def _headline(page) -> str:
    return page.locator("p", has_text=HEADLINE).inner_text()


def _pixels(canvases) -> list[str]:
    return [hashlib.sha256(canvases.nth(i).screenshot()).hexdigest() for i in range(canvases.count())]


def _redrawn(canvases, before: list[str], what: str) -> list[str]:
    deadline = time.monotonic() + 30
    while (now := _pixels(canvases)) == before:
        assert time.monotonic() < deadline, f"the plots did not redraw after {what}"
        time.sleep(0.5)
    return now


def test_plots_render_and_follow_the_scheduler_and_the_step_button(chromium, served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2200})
            page.set_default_timeout(60_000)
            page.goto(served, wait_until="domcontentloaded")
            page.locator("p", has_text=HEADLINE).wait_for()
            plots = page.locator(".bk-Canvas canvas, canvas")
            deadline = time.monotonic() + 60
            while plots.count() < PLOTS:
                assert time.monotonic() < deadline, f"only {plots.count()} of {PLOTS} plots were drawn"
                time.sleep(0.5)
            time.sleep(1.0)  # let bokeh finish its first paint
            page.screenshot(path=str(SHOTS / "cluster_default.png"), full_page=True)
            text = _headline(page)
            assert "easy_backfill" in text and "best_fit" in text
            # Every canvas has drawn something besides the background.
            for i in range(plots.count()):
                assert len(set(plots.nth(i).screenshot())) > 1
            before = _pixels(plots)

            # The scheduler selector is the first <select> of the sidebar.
            page.locator("select").first.select_option("fifo")
            page.locator("p", has_text="fifo").wait_for()
            assert "easy_backfill" not in _headline(page)
            before = _redrawn(plots, before, "the scheduler changed")
            page.screenshot(path=str(SHOTS / "cluster_fifo.png"), full_page=True)

            snapshot = int(re.search(r"snapshot (\d+) of", _headline(page)).group(1))
            page.get_by_role("button", name=re.compile("Step")).click()
            page.locator("p", has_text=f"snapshot {snapshot + 1} of").wait_for()
            _redrawn(plots, before, "the step button")
            page.screenshot(path=str(SHOTS / "cluster_step.png"), full_page=True)
        finally:
            browser.close()
