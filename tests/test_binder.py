"""Binder's pinned requirements must be the project's runtime dependencies, at versions pyproject admits."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import httpx
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import jupyter_lab

ROOT = Path(__file__).resolve().parent.parent


def _binder_pins() -> dict[str, Requirement]:
    pins = {}
    for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "--")):
            continue
        req = Requirement(line)
        pins[canonicalize_name(req.name)] = req
    return pins


def _project_deps() -> dict[str, Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {canonicalize_name(r.name): r for r in map(Requirement, data["project"]["dependencies"])}


def test_binder_pins_every_runtime_dependency_and_nothing_else():
    assert set(_binder_pins()) == set(_project_deps())


def test_binder_pins_are_exact_and_admitted_by_pyproject():
    deps = _project_deps()
    for name, pin in _binder_pins().items():
        specs = list(pin.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{name}: binder must pin with ==, got {pin}"
        version = Version(specs[0].version)
        # torch's '+cpu' local label selects the CPU wheel; pyproject's pin names the public version.
        assert deps[name].specifier.contains(version.public, prereleases=True), (
            f"{name}: binder pins {version}, pyproject asks for {deps[name].specifier}"
        )
        assert pin.extras == deps[name].extras, f"{name}: extras differ ({pin.extras} vs {deps[name].extras})"


def test_binder_hooks_are_executable_and_serve_the_dashboards():
    for hook in ("postBuild", "start"):
        assert (ROOT / "binder" / hook).stat().st_mode & 0o111, f"binder/{hook} must be executable"
    config = (ROOT / "binder" / "jupyter_server_config.py").read_text()
    assert re.search(r'"syslab",\s*"serve"', config) and "{base_url}panel" in config


def test_jupyterlab_with_the_binder_config_opens_on_the_labs(tmp_path):
    """The config Binder installs, read by a real ``jupyter lab``: ``/`` lands on ``labs/``
    (JupyterLab's own default URL overrides the server's, so both must be set)."""
    shutil.copy(ROOT / "binder" / "jupyter_server_config.py", tmp_path / "jupyter_server_config.py")
    with jupyter_lab(ROOT, config_dir=tmp_path) as base:
        r = httpx.get(f"{base}/?token=t")
        assert r.status_code == 302 and r.headers["location"].startswith("/lab/tree/labs"), r.headers
        assert httpx.get(f"{base}/lab/tree/labs?token=t").status_code == 200
