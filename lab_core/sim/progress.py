"""How long work reports how far it got, so notebooks (tqdm) and dashboards (a bar) show the same steps."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

Progress = Callable[[int, int, str], None]
"""``progress(done, total, label)``: ``done`` of ``total`` steps finished, ``label`` naming the next one."""


def steps(items: Sequence[T], progress: Progress | None, label: Callable[[T], str] = str) -> Iterator[T]:
    """Yield ``items``, calling ``progress`` before each (with its label) and once more at the end."""
    total = len(items)
    for done, item in enumerate(items):
        if progress is not None:
            progress(done, total, label(item))
        yield item
    if progress is not None:
        progress(total, total, "done")
