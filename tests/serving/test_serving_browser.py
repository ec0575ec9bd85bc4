"""Lab 07 in a real browser: the serving dashboard draws its plots and SLA badges; moving the decode-GPU
slider changes the numbers; the live engine's request timelines appear while the real engine runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import CHROMIUM_ARGS, ROOT, _listening, serve_lab
from lab_core.labs import LABS
from lab_core.procs import free_port, stop_process, wait_until

HEADLINE = "Recomputed in"  # the sentence over the badges stating the fleet and its numbers
PLOTS = 6  # TTFT, TPOT, KV use, queue depth, goodput vs load, fleet size vs load
SHOTS = Path(os.environ.get("SYSLAB_SCREENSHOTS", "/tmp"))

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

_SERVE = """
import sys, panel as pn
from widgets.serving import app
pn.config.nthreads = 4
pn.serve({"serving": app}, port=int(sys.argv[1]), address="127.0.0.1", show=False,
         websocket_origin=[f"127.0.0.1:{sys.argv[1]}", f"localhost:{sys.argv[1]}"])
"""


@contextmanager
def _serve_app(log: Path) -> Iterator[str]:
    """``widgets.serving.app`` on its own Panel server (until ``serving`` is in the course catalogue)."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        wait_until(lambda: _listening(port), proc, timeout=60, what="panel serve widgets.serving", log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc, timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """URL of the serving dashboard: ``syslab serve --lab serving`` once the lab is registered."""
    server = serve_lab if "serving" in LABS else lambda _lab, log: _serve_app(log)
    with server("serving", tmp_path / "serve.log") as base:
        yield base + "/serving"


def _wait(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


def test_plots_render_a_slider_changes_the_numbers_and_the_live_engine_draws_timelines(chromium, served):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1900})
            page.set_default_timeout(60_000)
            page.goto(served, wait_until="domcontentloaded")
            headline = page.locator("p", has_text=HEADLINE)
            headline.wait_for()
            plots = page.locator(".bk-Canvas canvas, canvas")
            _wait(lambda: plots.count() >= PLOTS, f"fewer than {PLOTS} plots were drawn")
            page.wait_for_timeout(1500)  # let bokeh finish its first paint
            page.screenshot(path=str(SHOTS / "serving_default.png"), full_page=True)
            for i in range(PLOTS):
                assert len(set(plots.nth(i).screenshot())) > 1  # drew something besides the background
            badges = page.locator(".sla-badge")
            assert badges.count() == 5
            before = badges.nth(3).inner_text()  # TPOT p99
            assert "TPOT p99" in before

            # The decode-GPU slider (the sidebar's sixth): focus its handle, step it up twice with the keyboard.
            page.locator(".noUi-handle").nth(5).focus()
            page.keyboard.press("ArrowRight")
            page.keyboard.press("ArrowRight")
            expect(headline).to_contain_text("5 colocated GPUs", timeout=30_000)
            tpot = page.locator(".sla-badge", has_text="TPOT p99")
            expect(tpot).not_to_have_text(before, timeout=30_000)
            after = tpot.inner_text()

            def ms(text):
                return float(text.split(":")[1].split("ms")[0])

            assert ms(after) < ms(before), (before, after)

            page.locator(".bk-tab", has_text="Live engine").click()
            page.get_by_role("button", name="Send requests to the live engine").click()
            status = page.locator("p", has_text="Live engine:")
            expect(status).to_contain_text("requests done", timeout=30_000)
            timeline = page.locator(".bk-Canvas canvas, canvas")
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / "serving_live_running.png"), full_page=True)
            expect(status).to_contain_text("idle. 8 of 8 requests done", timeout=60_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(SHOTS / "serving_live.png"), full_page=True)
            assert timeline.count() >= PLOTS + 2
            expect(page.locator(".serving-ids").first).not_to_have_text("\u00a0")
        finally:
            browser.close()
