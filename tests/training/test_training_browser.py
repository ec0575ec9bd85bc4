"""Lab 08 in a real browser: the live tab plots a real run from the tracker, its Start button launches a
torchrun job whose progress streams in, the memory and mesh tabs redraw when a slider moves, and the exercises
tab shows the drills' verdicts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import CHROMIUM_ARGS, serve_lab
from lab_core.training import launch
from lab_core.training.config import TrainConfig

SHOTS = Path(os.environ.get("SYSLAB_SCREENSHOTS", "/tmp"))

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _wait(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


def test_live_run_start_button_memory_and_mesh_tabs(chromium, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import expect, sync_playwright

    done = launch.run_in_process(TrainConfig(steps=8, warmup_steps=2, seq_len=32), workdir=tmp_path, run_name="earlier")
    monkeypatch.setenv("SYSLAB_TRAINING_DIR", str(tmp_path))
    # A served page starts jobs only when the server allows it (off by default for strangers).
    with (
        serve_lab("training", tmp_path / "serve.log", args=("--allow-training-runs",)) as base,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1500})
            page.set_default_timeout(60_000)
            page.goto(base + "/training", wait_until="domcontentloaded")
            status = page.locator("p", has_text="strategy ddp")
            expect(status).to_contain_text(f"({done.run_id}): finished, step 8 of 8")
            plots = page.locator(".bk-Canvas canvas, canvas")
            _wait(lambda: plots.count() >= 3, "the loss, LR and throughput plots were not drawn")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(SHOTS / "training_live_earlier.png"), full_page=True)

            steps = page.locator(".noUi-handle").last  # "Optimizer steps", the live tab's slider: 60 -> 20
            steps.focus()
            for _ in range(4):
                page.keyboard.press("ArrowLeft")
            expect(page.get_by_text("Optimizer steps:")).to_contain_text("20")
            page.get_by_role("button", name="Start a run (tiny model, this machine)").click()
            expect(status).to_contain_text(": running, step", timeout=120_000)
            page.screenshot(path=str(SHOTS / "training_live_running.png"), full_page=True)
            expect(status).to_contain_text("finished, step 20 of 20", timeout=180_000)
            page.screenshot(path=str(SHOTS / "training_live_finished.png"), full_page=True)

            page.locator(".bk-tab", has_text="Mesh").click()
            mesh = page.locator("p", has_text="GPUs on")
            expect(mesh).to_contain_text("8 GPUs on 1 node(s)")
            page.locator(".noUi-handle").nth(1).focus()  # the sidebar's tp slider
            page.keyboard.press("ArrowRight")
            expect(mesh).to_contain_text("16 GPUs on 2 node(s)", timeout=30_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(SHOTS / "training_mesh.png"), full_page=True)

            page.locator(".bk-tab", has_text="Memory per GPU").click()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(SHOTS / "training_memory.png"), full_page=True)

            page.locator(".bk-tab", has_text="Your exercises").click()
            expect(page.locator("p", has_text="Resume with the reference checkpoint functions")).to_contain_text(
                "bit-identical"
            )
            _wait(lambda: plots.count() >= 6, "the three exercise plots were not drawn")
            page.screenshot(path=str(SHOTS / "training_exercises.png"), full_page=True)
        finally:
            browser.close()
