"""Lab 01 in a real browser: ``syslab serve`` answers, the index links to the lab, a slider redraws the results."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CHROMIUM_ARGS, serve_lab

HEADLINE = "Recomputed in"  # the sentence under the title that states the computed boundary burst

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def _headline(page) -> str:
    return page.locator("p", has_text=HEADLINE).inner_text()


def _burst(page) -> int:
    """The most requests one key got through in one period, as the headline states it."""
    return int(re.search(r"let (\d+) requests", _headline(page)).group(1))


def _pixels(canvases) -> list[str]:
    """A digest of every plot canvas as drawn."""
    return [hashlib.sha256(canvases.nth(i).screenshot()).hexdigest() for i in range(canvases.count())]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """URL of the index page served by ``syslab serve --lab ratelimit``."""
    with serve_lab("ratelimit", tmp_path / "serve.log") as base:
        yield base + ""


def test_index_links_to_the_lab_and_the_limit_slider_redraws_the_results(chromium, served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(60_000)

            page.goto(served + "/", wait_until="domcontentloaded")
            link = page.locator("a.lab", has_text="Rate limiter")
            assert link.evaluate("a => a.href") == served + "/ratelimit"

            page.goto(served + "/ratelimit", wait_until="domcontentloaded")
            page.locator("p", has_text=HEADLINE).wait_for()
            plots = page.locator("canvas")
            plots.first.wait_for()
            assert "the limit of 20" in _headline(page)
            before_burst, before_pixels = _burst(page), _pixels(plots)

            limit = page.locator(".bk-input-group", has_text="Limit (requests per period)")
            limit.locator(".noUi-handle").focus()
            page.keyboard.press("ArrowRight")
            page.locator("p", has_text="the limit of 21").wait_for()
            assert "Limit (requests per period): 21" in limit.inner_text()
            # Recomputed, not just relabelled: the fixed window's boundary burst follows the limit (2 x limit).
            assert _burst(page) != before_burst
            deadline = time.monotonic() + 20
            while _pixels(plots) == before_pixels:
                assert time.monotonic() < deadline, "the plots did not redraw after the limit changed"
                time.sleep(0.5)
        finally:
            browser.close()
