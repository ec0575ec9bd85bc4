"""Lab 03 in a real browser: the feed dashboard loads, and moving the threshold slider recomputes it."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CHROMIUM_ARGS, serve_lab

HEADLINE = "Recomputed in"  # the sentence over the badges stating hybrid's numbers

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """URL of the feed dashboard served by ``syslab serve --lab feed``."""
    with serve_lab("feed", tmp_path / "serve.log") as base:
        yield base + "/feed"


def _headline(page) -> str:
    return page.locator("p", has_text=HEADLINE).inner_text()


def _writes(page) -> float:
    """Hybrid's fan-out writes per post, as the headline states it."""
    return float(re.search(r"([\d,.]+) writes per post", _headline(page)).group(1).replace(",", ""))


def _pixels(canvases) -> list[str]:
    return [hashlib.sha256(canvases.nth(i).screenshot()).hexdigest() for i in range(canvases.count())]


def test_threshold_slider_recomputes_the_numbers_and_plots(chromium, served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(60_000)
            page.goto(served, wait_until="domcontentloaded")
            page.locator("p", has_text=HEADLINE).wait_for()
            plots = page.locator("canvas")
            plots.first.wait_for()
            assert "threshold 100" in _headline(page)
            assert page.locator(".sla-badge").count() == 2
            before_writes, before_pixels = _writes(page), _pixels(plots)

            # The first slider of the sidebar (a discrete slider over log-spaced stops).
            page.locator(".noUi-handle").first.focus()
            page.keyboard.press("ArrowRight")  # the next stop: 200 followers
            page.locator("p", has_text="threshold 200").wait_for()
            # Recomputed, not just relabelled: fewer authors are pulled, so more writes per post.
            assert _writes(page) > before_writes
            deadline = time.monotonic() + 20
            while _pixels(plots) == before_pixels:
                assert time.monotonic() < deadline, "the plots did not redraw after the threshold changed"
                time.sleep(0.5)
        finally:
            browser.close()
