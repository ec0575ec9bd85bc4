"""A lab notebook in a real JupyterLab with every outside request refused (a classroom without
internet): the lab's own setup cell loads Bokeh and Panel from the installed packages, a plot
draws, and moving a slider redraws it through the kernel."""

from __future__ import annotations

import hashlib
import time

import pytest

from conftest import CHROMIUM_ARGS, jupyter_lab, run_all_cells, setup_and_cell_notebook, student_kernel_env

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

APP = """slider = pn.widgets.IntSlider(name="frequency", start=1, end=5, value=1)


def wave(f):
    x = np.linspace(0, 6.3, 200)
    return hv.Curve((x, np.sin(f * x)), "x (rad)", "y").opts(width=400, height=250)


pn.Column(slider, pn.bind(wave, slider))"""


def _canvas_hash(page) -> str:
    return hashlib.sha256(page.locator(".jp-OutputArea canvas").first.screenshot()).hexdigest()


def test_a_lab_notebook_draws_and_updates_with_no_internet(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    notebook = setup_and_cell_notebook("ratelimit", "import numpy as np\n\n" + APP, tmp_path / "offline.ipynb")
    token = "offline-test"
    refused: list[str] = []

    def offline(route) -> None:
        url = route.request.url
        local = url.startswith(("data:", "blob:")) or url.split("/")[2].split(":")[0] in ("127.0.0.1", "localhost")
        if local:
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    with jupyter_lab(tmp_path, config_dir=tmp_path / "config", token=token, env=student_kernel_env()) as base:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1300, "height": 1000})
                page.route("**/*", offline)
                page.set_default_timeout(90_000)
                run_all_cells(page, base, notebook.name, token)
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
    # Bokeh and Panel came from the notebook itself: no outside script was needed to draw.
    assert not [u for u in refused if "bokeh" in u or u.endswith("panel.min.js")], refused


@pytest.mark.timeout(900)
def test_every_lab_dashboard_draws_in_jupyterlab_with_no_internet(chromium, tmp_path):
    """Each catalogue lab's dashboard as its notebook's last cell shows it, in one offline JupyterLab: every
    one must draw (a plot's canvas) with outside requests refused."""
    from playwright.sync_api import sync_playwright

    from lab_core.labs import LABS

    for name in LABS:
        setup_and_cell_notebook(
            name, f"from widgets.{name} import dashboard\n\ndashboard()", tmp_path / f"{name}.ipynb"
        )
    token, refused = "offline-test", []

    def offline(route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or url.split("/")[2].split(":")[0] in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    with jupyter_lab(tmp_path, config_dir=tmp_path / "config", token=token, env=student_kernel_env()) as base:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                for name in LABS:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.route("**/*", offline)
                    page.set_default_timeout(180_000)
                    try:
                        run_all_cells(page, base, f"{name}.ipynb", token)
                        page.wait_for_timeout(1500)  # the first paint
                    finally:
                        page.screenshot(path=str(tmp_path / f"{name}.png"))
                    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
                    assert errors.count() == 0 or "Traceback" not in errors.first.inner_text(), name
                    page.close()
            finally:
                browser.close()
    print(f"screenshots: {tmp_path}")
    # Bokeh and Panel themselves come from the notebook (kit loads them inline, as the set-up cells do).
    assert not [u for u in refused if "cdn.bokeh.org" in u or u.endswith("panel.min.js")], sorted(set(refused))
    if refused:
        # Known, open (issue 15): every dashboard draws offline, but three files Panel bundles
        # (Tabulator's CSS, luxon, es-module-shims) are still asked of its CDN.
        pytest.xfail(f"{len(refused)} requests tried to leave the machine, e.g. {sorted(set(refused))[:4]}")
