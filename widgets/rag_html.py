"""The RAG page's HTML: the cited answer with its sources, the ranked lists and the score tables.

Plain strings over ``lab_core.rag.experiments``' data, in the page's styles, for ``widgets/rag.py`` to
show in panes. A citation keeps one colour everywhere: its badge, its source box and its rows.
"""

from __future__ import annotations

import html
import re

import pandas as pd

from lab_core.rag import experiments as ex
from widgets import kit

CSS = """
.rag-badge { display:inline-block; min-width:1.4em; padding:0 0.35em; margin:0 0.15em; border-radius:0.7em;
  color:white; font-size:0.8em; font-weight:600; text-align:center; line-height:1.4em; vertical-align:middle; }
.rag-answer { font-size:1.1em; line-height:1.7; }
.rag-refused { background:#fdecea; border-left:4px solid #d62728; padding:0.6em 1em; }
.rag-source { margin:0.5em 0; padding:0.4em 0.8em; border-left:4px solid; background:#fafafa; }
.rag-source blockquote { margin:0.3em 0 0; color:#444; font-size:0.9em; }
.rag-table { border-collapse:collapse; width:100%; font-size:0.85em; }
.rag-table th, .rag-table td { padding:0.25em 0.4em; border-bottom:1px solid #e5e5e5; text-align:left; }
.rag-table td.num, .rag-table th.num { text-align:right; font-variant-numeric:tabular-nums; }
.rag-table .id { color:#888; font-size:0.85em; }
.rag-table th { position:sticky; top:0; background:#fff; vertical-align:bottom; }
"""
HEADERS = {
    "refusal_accuracy": "refusal accuracy",
    "citation_support": "citation support",
    "latency_ms_p50": "median latency (ms)",
    "should_refuse": "should refuse",
    "latency_ms": "latency (ms)",
}


def styled(body: str) -> str:
    """``body`` with the page's styles: each HTML pane is its own shadow root, so each carries them."""
    return f"<style>{CSS}</style>{body}"


def html_table(frame: pd.DataFrame, scroll: bool = False) -> str:
    """``frame`` as an HTML table whose headers wrap rather than being cut, with units; numbers to 3
    significant digits, "–" where a metric does not apply (a question the corpus cannot answer)."""

    def cell(value: object) -> str:
        if isinstance(value, bool):
            return f"<td>{'yes' if value else 'no'}</td>"
        if isinstance(value, float):
            return f"<td class=num>{'–' if value != value else f'{value:.3g}'}</td>"
        return f"<td>{html.escape(str(value))}</td>"

    numeric = {c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    head = "".join(
        f"<th{' class=num' if c in numeric else ''}>{html.escape(HEADERS.get(c, c))}</th>" for c in frame.columns
    )
    rows = "".join(f"<tr>{''.join(cell(v) for v in row)}</tr>" for row in frame.itertuples(index=False))
    box = "max-height:460px;overflow-y:auto" if scroll else ""
    return styled(f'<div style="{box}"><table class="rag-table"><tr>{head}</tr>{rows}</table></div>')


def citation_color(n: int) -> str:
    """The colour of citation ``n`` (1-based): its badge, its source box and its rows in the lists."""
    return kit.PALETTE[(n - 1) % len(kit.PALETTE)]


def badge(n: int) -> str:
    """Citation ``n`` as a coloured pill."""
    return f'<span class="rag-badge" style="background:{citation_color(n)}">{n}</span>'


def answer_html(asked: ex.Asked) -> str:
    """The answer with each [n] as a badge and its citation check (or the refusal), then each cited chunk."""
    a = asked.result.answer
    if a.refused:
        body = (
            f'<div class="rag-refused"><b>Refused: {html.escape(a.text)}.</b> No retrieved sentence scores '
            f"above the answerer's threshold ({asked.min_score:g}), so it says so instead of guessing.</div>"
        )
    else:
        marked = re.sub(r"\s*\[(\d+)\]", lambda m: badge(int(m.group(1))), html.escape(a.text))
        check = a.check
        problems = "".join(f"<li>{html.escape(p)}</li>" for p in check.problems)
        body = (
            f'<div class="rag-answer">{marked}</div>'
            f"<p><b>Citation check:</b> {check.supported} of {check.cited} cited sentences supported by "
            f"the chunk they cite ({check.rate:.0%})</p>" + (f"<ul>{problems}</ul>" if problems else "")
        )
    boxes = "".join(
        f'<div class="rag-source" style="border-color:{citation_color(s.n)}">{badge(s.n)} {html.escape(s.place)}'
        f"<blockquote>{html.escape(s.snippet)}</blockquote></div>"
        for s in ex.sources(asked).itertuples()
    )
    return styled(body + boxes)


def ranked_list(stage: str, table: pd.DataFrame, setting: ex.Setting) -> str:
    """One stage's top k (``LIST_COLUMNS``) under its title, cited chunks' rows tinted in their colour."""
    title, score = ex.list_heading(stage, setting)
    head = styled(f"<b>{html.escape(title)}</b>")
    if table.empty:
        # BM25 finds nothing when no query term is in the corpus ("capital of France").
        why = "no chunk shares a term with the question" if stage == "bm25" else "nothing retrieved"
        return f'{head}<p style="color:#888">— {why}</p>'
    rows = []
    for row in table.itertuples():
        tint = f' style="background:{citation_color(row.cited)}33"' if row.cited else ""
        mark = badge(row.cited) if row.cited else ""
        rows.append(
            f"<tr{tint}><td class=num>{row.rank}</td><td>{html.escape(row.chunk)} "
            f"<span class=id>#{html.escape(row.chunk_id.rsplit('#', 1)[-1])}</span></td>"
            f"<td class=num>{row.score:.4g}</td><td>{mark}</td></tr>"
        )
    return (
        f'{head}<table class="rag-table"><tr><th class=num>rank</th><th>chunk (doc § section #n)</th>'
        f"<th class=num>{html.escape(score)}</th><th>cited as</th></tr>{''.join(rows)}</table>"
    )
