"""``syslab serve``: every lab's dashboard on one Panel server, each at ``/<lab>``, with an index page at ``/``."""

from __future__ import annotations

import html
import importlib
from collections.abc import Callable, Sequence

import panel as pn
import tornado.web

from lab_core.labs import LABS, get_lab

# Callbacks run on a small pool, so one session's long recompute does not freeze the others
# and its progress bar can reach the browser while it runs.
THREADS = 4

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>sysdesign-lab</title>
<style>
body {{ font-family: system-ui, "Segoe UI", Roboto, Arial, sans-serif; margin: 0; background: #f4f6f8; color: #222; }}
header {{ background: #1f77b4; color: white; padding: 1.2rem 2rem; }}
header h1 {{ margin: 0; font-size: 1.6rem; }}
header p {{ margin: 0.3rem 0 0; opacity: 0.9; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(18rem, 1fr)); gap: 1.2rem; padding: 2rem; }}
a.lab {{ display: block; background: white; border-radius: 8px; padding: 1rem 1.2rem; text-decoration: none;
        color: inherit; box-shadow: 0 1px 3px rgba(0,0,0,.15); }}
a.lab:hover {{ box-shadow: 0 3px 10px rgba(0,0,0,.25); }}
a.lab .num {{ color: #1f77b4; font-weight: 600; }}
a.lab h2 {{ margin: 0.2rem 0 0.4rem; font-size: 1.2rem; }}
a.lab p {{ margin: 0; color: #555; font-size: 0.95rem; }}
</style></head>
<body><header><h1>sysdesign-lab</h1><p>Interactive dashboards, one per lab.</p></header>
<main>
{cards}
</main></body></html>
"""


def _summary(module_name: str) -> str:
    doc = importlib.import_module(module_name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def index_html(labs: Sequence[str], base: str = "") -> str:
    """The index page: a card per lab linking to ``base + name`` (relative, so it works behind any proxy)."""
    cards = []
    for name in labs:
        lab = LABS[name]
        number = lab.folder.split("_", 1)[0]
        cards.append(
            f'<a class="lab" href="{html.escape(base + name)}"><span class="num">Lab {html.escape(number)}</span>'
            f"<h2>{html.escape(lab.title)}</h2><p>{html.escape(_summary(lab.widget_module))}</p></a>"
        )
    return _PAGE.format(cards="\n".join(cards))


class IndexHandler(tornado.web.RequestHandler):
    """Serves :func:`index_html` at the (prefixed) root."""

    def initialize(self, labs: Sequence[str]) -> None:
        self.labs = list(labs)

    def get(self) -> None:
        # Links stay relative: from ".../root/" a bare name works; from ".../root" the last segment is needed.
        path = self.request.path
        base = "" if path.endswith("/") else path.rsplit("/", 1)[-1] + "/"
        self.write(index_html(self.labs, base))


def origins(port: int, address: str, extra: Sequence[str] | None = None) -> list[str]:
    """Hosts allowed to open the websocket: this machine under both names, the bound address, and ``extra``."""
    hosts = ["localhost", "127.0.0.1"]
    if address not in ("", "0.0.0.0", "::", *hosts):
        hosts.append(address)
    return [*(f"{host}:{port}" for host in hosts), *(extra or [])]


def serve(
    labs: Sequence[str],
    port: int,
    address: str = "127.0.0.1",
    prefix: str = "",
    websocket_origins: Sequence[str] | None = None,
    show: bool = False,
) -> None:
    """Serve each lab's ``app`` at ``/<lab>`` (fresh per session) and the index at ``/``, until interrupted."""
    labs = list(dict.fromkeys(labs))
    if not labs:
        raise ValueError("no labs to serve")
    apps: dict[str, Callable[[], object]] = {
        name: importlib.import_module(get_lab(name).widget_module).app for name in labs
    }
    if pn.config.nthreads is None:
        pn.config.nthreads = THREADS
    pn.serve(
        apps,
        port=port,
        address=address,
        prefix=prefix,
        websocket_origin=origins(port, address, websocket_origins),
        show=show,
        title={name: f"{LABS[name].title} · sysdesign-lab" for name in labs},
        # Before Bokeh's own root handler in the route table, so this index wins.
        extra_patterns=[(r"/?", IndexHandler, {"labs": list(labs)})],
        verbose=True,
    )
