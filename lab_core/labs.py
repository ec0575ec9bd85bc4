"""The course catalogue: one entry per lab, the single place that maps names to folders and modules."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The public data folder for benchmarks and tests: ``SYSLAB_DATA``, else ``../shared/data``
    next to the checkout (never part of the project; see ``../shared/data/README.md``)."""
    return Path(os.environ.get("SYSLAB_DATA") or ROOT.parent / "shared" / "data")


@dataclass(frozen=True)
class Lab:
    """Where a lab's pieces live; ``name`` is its ``lab_core`` package name."""

    name: str
    folder: str
    notebook: str
    title: str
    uses: tuple[str, ...] = ()
    """Other labs whose public API this one calls, as the brief says (one way only; checked by tests)."""

    @property
    def number(self) -> str:
        """The two-digit lab number from the folder name."""
        return self.folder.split("_", 1)[0]

    @property
    def page_title(self) -> str:
        """The title of the lab's served page: ``Lab 01 · Rate limiter``."""
        return f"Lab {self.number} · {self.title}"

    @property
    def solution(self) -> Path:
        """The instructor notebook (nbgrader source)."""
        return ROOT / "solutions" / self.folder / self.notebook

    @property
    def release(self) -> Path:
        """The committed student notebook (nbgrader release)."""
        return ROOT / "labs" / self.folder / self.notebook

    @property
    def mutants(self) -> Path:
        """Folder of plausible wrong answers the grader must fail."""
        return ROOT / "tests" / self.name / "mutants"

    @property
    def widget_module(self) -> str:
        """Module with ``dashboard()`` and ``app()``."""
        return f"widgets.{self.name}"

    @property
    def benchmark(self) -> Path:
        """The lab's benchmark script."""
        return ROOT / "benchmarks" / f"{self.name}.py"


LABS: dict[str, Lab] = {
    lab.name: lab
    for lab in (
        Lab("ratelimit", "01_rate_limiter", "rate_limiter.ipynb", "Rate limiter"),
        Lab("feed", "03_feed", "feed.ipynb", "News feed"),
        Lab("rag", "06_rag", "rag.ipynb", "RAG: retrieval and grounded answers"),
        Lab("serving", "07_llm_serving", "llm_serving.ipynb", "LLM inference serving", uses=("ratelimit",)),
        Lab("training", "08_training", "training.ipynb", "Distributed training"),
        Lab("cluster", "09_gpu_scheduler", "gpu_scheduler.ipynb", "GPU cluster scheduler"),
    )
}


def get_lab(name: str) -> Lab:
    """The lab called ``name``, or a ValueError listing the known ones."""
    try:
        return LABS[name]
    except KeyError:
        raise ValueError(f"unknown lab {name!r}; known labs: {', '.join(LABS)}") from None
