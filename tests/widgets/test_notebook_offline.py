"""A lab notebook in a real JupyterLab with every outside request refused (a classroom without
internet): the lab's own setup cell loads Bokeh and Panel from the installed packages, a plot
draws, and moving a slider redraws it through the kernel."""

from __future__ import annotations

import hashlib
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

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

APP = """slider = pn.widgets.IntSlider(name="frequency", start=1, end=5, value=1)


def wave(f):
    x = np.linspace(0, 6.3, 200)
    return hv.Curve((x, np.sin(f * x)), "x (rad)", "y").opts(width=400, height=250)


pn.Column(slider, pn.bind(wave, slider))"""


def _notebook(folder: Path) -> Path:
    """The rate limiter's setup cell, as students get it, then a slider driving a HoloViews plot."""
    release = nbformat.read(get_lab("ratelimit").release, as_version=4)
    setup = next(c for c in release.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "setup")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(setup.source), nbformat.v4.new_code_cell("import numpy as np\n\n" + APP)]
    path = folder / "offline.ipynb"
    nbformat.write(nb, path)
    return path


def _canvas_hash(page) -> str:
    return hashlib.sha256(page.locator(".jp-OutputArea canvas").first.screenshot()).hexdigest()


def test_a_lab_notebook_draws_and_updates_with_no_internet(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    notebook = _notebook(tmp_path)
    port, token = free_port(), "offline-test"
    env = {k: v for k, v in os.environ.items() if k != "SYSLAB_FAST"}  # what a student's kernel sees
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "config")  # no user settings, no news pop-up config
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
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    refused: list[str] = []

    def offline(route) -> None:
        url = route.request.url
        local = url.startswith(("data:", "blob:")) or url.split("/")[2].split(":")[0] in ("127.0.0.1", "localhost")
        if local:
            route.continue_()
        else:
            refused.append(url)
            route.abort()

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
            try:
                page = browser.new_page(viewport={"width": 1300, "height": 1000})
                page.route("**/*", offline)
                page.set_default_timeout(90_000)
                page.goto(f"{base}/lab/tree/{notebook.name}?token={token}")
                page.locator(".jp-Notebook").wait_for()
                page.get_by_text("(ipykernel) | Idle").wait_for()  # the kernel is up before cells are sent
                page.locator(".jp-Notebook .jp-Cell").first.click()
                page.click("text=Run")  # the menu bar's Run menu
                page.click("text=Run All Cells")
                page.locator(".jp-OutputArea canvas").first.wait_for()
                page.wait_for_timeout(1000)  # the first paint of the canvas
                before = _canvas_hash(page)
                page.locator(".jp-OutputArea .noUi-handle").first.focus()
                page.keyboard.press("ArrowRight")  # frequency 1 -> 2: the kernel recomputes the curve
                page.locator(".jp-OutputArea", has_text="frequency: 2").first.wait_for()
                deadline = time.monotonic() + 30
                while _canvas_hash(page) == before:
                    assert time.monotonic() < deadline, "the plot did not redraw after the slider moved"
                    time.sleep(0.5)
            finally:
                page.screenshot(path=str(tmp_path / "offline.png"))  # kept in the test's folder for a look
                browser.close()
    finally:
        stop_process(proc, timeout=10)
    # Bokeh and Panel came from the notebook itself: no outside script was needed to draw.
    assert not [u for u in refused if "bokeh" in u or u.endswith("panel.min.js")], refused
