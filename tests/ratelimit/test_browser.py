"""Lab 01 in a real browser: ``syslab serve`` answers, the index links to the lab, a slider redraws the results."""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need

from lab_core.procs import free_port, stop_process, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HEADLINE = "Recomputed in"  # the sentence under the title that states the computed boundary burst

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


@pytest.fixture
def chromium() -> str:
    """Debian's chromium; skipped when absent, failed under ``CI=true``."""
    return need(CHROMIUM, "the browser test drives Debian's chromium through Playwright")


def _syslab() -> str:
    beside = Path(sys.executable).with_name("syslab")
    return str(beside) if beside.exists() else shutil.which("syslab") or pytest.fail("syslab command not found")


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


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
    """Base URL of ``syslab serve --lab ratelimit`` on a free loopback port; the server is stopped afterwards."""
    port = free_port()
    log = tmp_path / "serve.log"
    # Output to a file, not a pipe nobody reads, which could fill and stall the server.
    with log.open("w") as out:
        proc = subprocess.Popen([_syslab(), "serve", "--port", str(port), "--lab", "ratelimit"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(base + "/"), proc, timeout=45, what="syslab serve", log=log)
        yield base
    finally:
        stop_process(proc, timeout=10)


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
