"""Lab 06 in a real browser: the RAG dashboard answers the default question with citation badges; a
typed question, sent with Enter, changes the answer and its badges; bm25 mode shows no fused list and
no fusion controls; an unanswerable one is refused; the evaluation tab scores the settings when it is
first opened and draws no empty plot before."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CHROMIUM_ARGS, serve_lab

ANSWER = ".rag-answer"  # the answer paragraph, with a .rag-badge per citation
SHOTS = Path(os.environ.get("SYSLAB_SCREENSHOTS", "/tmp"))
QUESTION = "What does time to first token measure?"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """URL of the RAG dashboard served by ``syslab serve --lab rag``."""
    with serve_lab("rag", tmp_path / "serve.log") as base:
        yield base + "/rag"


def test_a_typed_question_gets_a_cited_answer(chromium, served):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1800})
            page.set_default_timeout(90_000)
            page.goto(served, wait_until="domcontentloaded")
            answer = page.locator(ANSWER)
            answer.wait_for()
            expect(answer.locator(".rag-badge").first).to_be_visible()
            first = answer.inner_text()
            assert "fixed window" in first.lower()
            page.wait_for_timeout(1000)  # let bokeh finish its first paint
            page.screenshot(path=str(SHOTS / "rag_default.png"), full_page=True)

            box = page.get_by_label("Question").or_(page.locator("input[type=text]").first).first
            box.fill(QUESTION)
            box.press("Enter")
            # A new question embeds new sentences on a cold cache: allow a shared machine's worst case.
            expect(answer).not_to_have_text(first, timeout=30_000)
            expect(answer.locator(".rag-badge").first).to_be_visible()
            assert "first token" in answer.inner_text().lower()
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / "rag_typed.png"), full_page=True)

            # bm25 mode: one list cannot be fused, so neither the Fused list nor the fusion controls show.
            expect(page.get_by_text("Fused (reciprocal rank fusion)")).to_be_visible()
            page.get_by_label("Retrieval mode").select_option("bm25")
            expect(page.get_by_text("Fused (reciprocal rank fusion)")).to_have_count(0, timeout=30_000)
            expect(page.get_by_text("Fusion of the two lists")).to_be_hidden()
            expect(page.get_by_text("Dense weight")).to_be_hidden()
            expect(page.get_by_text("BM25 score")).to_be_visible()
            page.screenshot(path=str(SHOTS / "rag_bm25.png"), full_page=True)
            page.get_by_label("Retrieval mode").select_option("hybrid")
            expect(page.get_by_text("Fused (reciprocal rank fusion)")).to_be_visible(timeout=30_000)

            box.fill("What is the capital of France?")
            box.press("Enter")
            expect(page.locator(".rag-refused")).to_contain_text("not found in the documents", timeout=30_000)
            expect(answer).to_have_count(0)
            page.screenshot(path=str(SHOTS / "rag_refused.png"), full_page=True)

            page.locator(".bk-tab", has_text="Evaluation").click()
            # Opening the tab starts the evaluation; nothing (no empty axes) is drawn before it is done.
            expect(page.get_by_text("median latency (ms)")).to_be_visible(timeout=120_000)
            expect(page.get_by_text("hybrid (rrf) + rerank").first).to_be_visible()
            expect(page.get_by_role("button", name="Evaluate on the labelled questions")).to_be_enabled()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(SHOTS / "rag_evaluation.png"), full_page=True)
        finally:
            browser.close()
