"""Where training jobs keep their data, checkpoints, tracker and registry by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_workdir() -> Path:
    """``SYSLAB_TRAINING_DIR``, else ``~/.cache/syslab/training``."""
    return Path(os.environ.get("SYSLAB_TRAINING_DIR") or Path.home() / ".cache" / "syslab" / "training")
