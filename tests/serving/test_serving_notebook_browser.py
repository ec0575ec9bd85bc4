"""Lab 07's live engine inside a real JupyterLab, as a student meets it: the whole dashboard in a
cell, the live tab's button clicked. The engine thread only fills a snapshot and the kernel's event
loop draws it, so the plots follow the run to its end. (Updates applied from the engine thread left
the timeline on a "running" frame and the KV plot cut short while the status said "idle": checked
with the old dashboard, this test fails on its last assertion.)"""

from __future__ import annotations

import time

import pytest

from conftest import CHROMIUM_ARGS, jupyter_lab, run_all_cells, setup_and_cell_notebook, student_kernel_env

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELL = "from widgets.serving import dashboard\n\ndash = dashboard(live_requests=4, live_pause=30)\ndash"
# The titles of every Bokeh model in the page's documents (what the browser was last told to draw).
TITLES = (
    "() => Bokeh.documents.flatMap(d => [...d._all_models.values()]).filter(m => m.type == 'Title').map(m => m.text)"
)


def test_the_live_engine_streams_into_a_notebook(chromium, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    notebook = setup_and_cell_notebook("serving", CELL, tmp_path / "live.ipynb")
    token = "live-test"
    with jupyter_lab(tmp_path, config_dir=tmp_path / "config", token=token, env=student_kernel_env()) as base:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            try:
                page.set_default_timeout(120_000)
                run_all_cells(page, base, notebook.name, token)
                page.locator(".bk-tab", has_text="Live engine").click()
                page.get_by_role("button", name="Send requests to the live engine").click()
                status = page.locator(".jp-OutputArea p", has_text="Live engine:")
                expect(status).to_contain_text("idle. 4 of 4 requests done", timeout=120_000)
                expect(page.locator(".jp-OutputArea .serving-ids").first).not_to_have_text("\u00a0")
                deadline = time.monotonic() + 10
                while not any("Request timelines (done; 4 requests" in t for t in page.evaluate(TITLES)):
                    assert time.monotonic() < deadline, (
                        f"the timeline never drew the finished run: {page.evaluate(TITLES)}"
                    )
                    time.sleep(0.5)
            finally:
                page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
                print(f"screenshot: {tmp_path / 'live.png'}")
                browser.close()
