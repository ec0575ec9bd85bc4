"""What every lab's notebook grader shares: where hypothesis keeps its cache, deterministic settings,
and failures reported as the grader's own message.

Import this module before ``hypothesis`` in a grader.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable

# Hypothesis caches what it learns in ./.hypothesis. In a notebook that is the lab's folder, which
# nbgrader would copy into the student release: outside pytest the cache goes to the temp folder.
if "pytest" not in sys.modules:
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "syslab-hypothesis"))

from hypothesis import HealthCheck, Phase, settings  # noqa: E402 - after the cache folder is set above


def hypothesis_settings(max_examples: int) -> settings:
    """Derandomized, no deadline, no database: a grade never depends on luck, timing or a cache."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        report_multiple_bugs=False,
    )


def run_property(test: Callable[[], None]) -> None:
    """Run a hypothesis test; show only the first (shrunk) failure's message, not hypothesis' report.

    A ``NotImplementedError`` from a blank exercise goes through unchanged.
    """
    try:
        test()
    except NotImplementedError:
        raise
    except AssertionError as exc:
        raise AssertionError(str(exc)) from None
