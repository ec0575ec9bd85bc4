"""Lab 07's live engine inside a real JupyterLab, as a student meets it: the whole dashboard in a
cell, the live tab's button clicked. The engine thread only fills a snapshot and the kernel's event
loop draws it, so the plots follow the run to its end. (Updates applied from the engine thread left
the timeline on a "running" frame and the KV plot cut short while the status said "idle": checked
with the old dashboard, this test fails on its last assertion.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nbformat
import pytest

from conftest import CHROMIUM_ARGS
from lab_core.labs import get_lab
from lab_core.procs import free_port, stop_process, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELL = "from widgets.serving import dashboard\n\ndash = dashboard(live_requests=4, live_pause=30)\ndash"
# The titles of every Bokeh model in the page's documents (what the browser was last told to draw).
TITLES = (
    "() => Bokeh.documents.flatMap(d => [...d._all_models.values()]).filter(m => m.type == 'Title').map(m => m.text)"
)


def _notebook(folder: Path) -> Path:
    """The serving lab's setup cell, as students get it, then the dashboard."""
    release = nbformat.read(get_lab("serving").release, as_version=4)
    setup = next(c for c in release.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "setup")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(setup.source), nbformat.v4.new_code_cell(CELL)]
    path = folder / "live.ipynb"
    nbformat.write(nb, path)
    return path


def test_the_live_engine_streams_into_a_notebook(chromium, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    notebook = _notebook(tmp_path)
    port, token = free_port(), "live-test"
    env = {k: v for k, v in os.environ.items() if k != "SYSLAB_FAST"}  # what a student's kernel sees
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "config")
    log = tmp_path / "lab.log"
    cmd = [
        str(Path(sys.executable).with_name("jupyter")),
        "lab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.token={token}",
        f"--notebook-dir={tmp_path}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: httpx.get(f"{base}/api/status?token={token}").status_code == 200,
            proc,
            timeout=60,
            what="jupyter lab",
            log=log,
        )
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            try:
                page.set_default_timeout(120_000)
                page.goto(f"{base}/lab/tree/{notebook.name}?token={token}")
                page.locator(".jp-Notebook").wait_for()
                page.get_by_text("(ipykernel) | Idle").wait_for()
                page.locator(".jp-Notebook .jp-Cell").first.click()
                page.click("text=Run")
                page.click("text=Run All Cells")
                page.locator(".jp-OutputArea canvas").first.wait_for()
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
    finally:
        stop_process(proc, timeout=10)
