"""Binder's pinned requirements must be the project's runtime dependencies, at versions pyproject admits."""
from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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


def test_binder_hooks_are_executable_and_open_the_labs():
    for hook in ("postBuild", "start"):
        assert (ROOT / "binder" / hook).stat().st_mode & 0o111, f"binder/{hook} must be executable"
    config = (ROOT / "binder" / "jupyter_server_config.py").read_text()
    assert '"/lab/tree/labs"' in config
    assert '"syslab", "serve"' in config and "{base_url}panel" in config
