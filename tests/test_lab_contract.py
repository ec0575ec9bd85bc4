"""The lab contract, checked for every lab in the catalogue: a new lab is checked by adding its line
to ``lab_core/labs.py``.

Each lab has its solution and a current student notebook, a dashboard on ``kit.LabDashboard`` that
takes the reference implementation of every student seam as "yours" without an error, a benchmark,
a demo parser, seams in ``protocol.py``, what it runs in ``experiments.py``, tests named for it,
imports of other labs only as the catalogue declares, no import loops, and a served page that
draws with no request leaving the machine.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CHROMIUM_ARGS, ROOT, serve_lab
from lab_core.labs import LABS, Lab

LAB_PARAMS = [pytest.param(lab, id=name) for name, lab in LABS.items()]
SYSLAB = str(Path(sys.executable).with_name("syslab"))
# A dashboard module is parameters and plots; past this its logic belongs in lab_core/<lab>/experiments.py.
# Counted in statements, not lines, so the formatter's line breaks do not count: 270 statements is
# about 400 lines written compactly, about 550 as `ruff format` lays them out.
MAX_DASHBOARD_STATEMENTS = 270


# ---------------------------------------------------------------- files and names


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_the_lab_has_every_part_in_its_place(lab: Lab):
    package = ROOT / "lab_core" / lab.name
    missing = [
        str(p.relative_to(ROOT))
        for p in (
            lab.solution,
            lab.release,
            lab.benchmark,
            package / "protocol.py",
            package / "experiments.py",
            package / "grading.py",
            package / "demo.py",
            ROOT / "widgets" / f"{lab.name}.py",
            ROOT / "docs" / "labs" / f"{lab.folder}.md",
        )
        if not p.is_file()
    ]
    assert not missing, f"lab {lab.name} lacks {missing}"
    assert lab.mutants.is_dir() and any(lab.mutants.iterdir()), f"{lab.mutants} holds no mutants"


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_tests_are_named_for_their_lab(lab: Lab):
    tests = sorted(p.name for p in (ROOT / "tests" / lab.name).glob("test_*.py"))
    assert tests, f"tests/{lab.name} has no tests"
    wrong = [name for name in tests if not name.startswith(f"test_{lab.name}_")]
    assert not wrong, f"rename to test_{lab.name}_*.py: {wrong}"


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_the_dashboard_modules_stay_thin(lab: Lab):
    for path in [ROOT / "widgets" / f"{lab.name}.py", *sorted((ROOT / "widgets").glob(f"{lab.name}_*.py"))]:
        tree = ast.parse(path.read_text())
        statements = len({node.lineno for node in ast.walk(tree) if isinstance(node, ast.stmt)})
        assert statements <= MAX_DASHBOARD_STATEMENTS, (
            f"{path.relative_to(ROOT)} has {statements} statements; move what it runs to experiments.py"
        )


# ---------------------------------------------------------------- imports


def _imports(path: Path) -> set[str]:
    """Modules a file imports when it loads or when its functions run (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = {
        id(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for node in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _module_level_imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` imported at module level (what decides import order and loops)."""
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(package))
    return found


def _lab_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "lab_core" and parts[1] in LABS else None


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_a_lab_uses_other_labs_only_as_the_catalogue_declares(lab: Lab):
    allowed = set(lab.uses)
    for path in sorted((ROOT / "lab_core" / lab.name).rglob("*.py")):
        for module in _imports(path):
            other = _lab_of(module)
            if other is None or other == lab.name:
                continue
            where = path.relative_to(ROOT)
            assert other in allowed, f"{where} imports {module}; declare uses=({other!r},) in lab_core/labs.py"
            assert ".demo" not in module, f"{where} imports another lab's demo ({module})"


def test_declared_uses_go_one_way():
    for lab in LABS.values():
        for other in lab.uses:
            assert other in LABS, f"{lab.name} uses unknown lab {other!r}"
            assert lab.name not in LABS[other].uses, f"{lab.name} and {other} use each other"


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_no_import_loop_inside_a_lab(lab: Lab):
    package = f"lab_core.{lab.name}"
    root = ROOT / "lab_core" / lab.name
    modules = {
        ".".join(("lab_core", *p.relative_to(ROOT / "lab_core").with_suffix("").parts)).removesuffix(".__init__"): p
        for p in root.rglob("*.py")
    }
    graph = {
        name: {
            m
            for m in _module_level_imports(path, package)
            if m in modules and m != name and not name.startswith(m + ".") and m != package
        }
        for name, path in modules.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail(
                    "import loop: " + " -> ".join([*trail[trail.index(nxt) :], nxt])
                    if nxt in trail
                    else f"import loop through {nxt}"
                )
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_lab_core_never_imports_the_ui():
    ui = ("panel", "holoviews", "bokeh", "widgets", "ipywidgets")
    bad = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in sorted((ROOT / "lab_core").rglob("*.py"))
        for m in _imports(p)
        if m.split(".")[0] in ui
    ]
    assert not bad, bad


# ---------------------------------------------------------------- notebooks, benchmark, demo


@pytest.mark.slow
@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_the_student_notebook_is_what_nbgrader_makes_of_the_solution(lab: Lab, tmp_path: Path):
    from lab_core.course import generate_release

    _, current = generate_release(lab, tmp_path / "course")
    assert current, f"labs/{lab.folder} is stale: nbgrader generate_assignment {lab.folder} --force"


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_the_benchmark_defines_run(lab: Lab):
    tree = ast.parse(lab.benchmark.read_text())
    run = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"), None)
    assert run is not None, f"{lab.benchmark} must define run(quick: bool) -> list[Figure]"
    assert [a.arg for a in run.args.args] == ["quick"], ast.unparse(run.args)
    assert (ROOT / "tests" / lab.name / f"test_{lab.name}_bench.py").is_file(), "the benchmark's quick run is untested"


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_the_demo_parser_builds(lab: Lab):
    proc = subprocess.run([SYSLAB, "demo", lab.name, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--port" in proc.stdout


# ---------------------------------------------------------------- the dashboard


@pytest.mark.slow
@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_the_dashboard_takes_every_seam_and_titles_its_page_from_the_catalogue(lab: Lab):
    import panel as pn

    from widgets import kit

    module = importlib.import_module(lab.widget_module)
    cls = module.Dashboard
    assert issubclass(cls, kit.LabDashboard) and cls.lab == lab.name
    assert cls.plugins, f"{lab.widget_module} takes none of the notebook's classes"
    dash = module.dashboard(**{name: plugin.reference for name, plugin in cls.plugins.items()})
    try:
        assert isinstance(dash, cls)
        assert set(dash.yours) == set(cls.plugins)
        assert dash.errors == {}, dash.errors
        pn.panel(dash).get_root()
    finally:
        dash.close()
    with pytest.raises(TypeError, match=next(iter(cls.plugins))):
        module.dashboard(**{next(iter(cls.plugins)): 42})
    page = module.app()
    assert page.title == lab.page_title
    assert page.design is kit.OfflineFast


@pytest.mark.browser
@pytest.mark.timeout(600)
def test_every_page_draws_without_asking_the_internet(chromium, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    names = list(LABS)
    with serve_lab(names[0], tmp_path / "serve.log", also=names[1:]) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for name in names:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(120_000)
                outside: list[str] = []
                errors: list[str] = []

                def on_error(exc: Exception, errors: list[str] = errors) -> None:
                    errors.append(str(exc))

                page.on("pageerror", on_error)

                def route(r, outside=outside):
                    if r.request.url.startswith(base.replace("http", "ws")) or r.request.url.startswith(base):
                        r.continue_()
                    else:
                        outside.append(r.request.url)
                        r.abort()

                page.route("**/*", route)
                page.goto(f"{base}/{name}", wait_until="domcontentloaded")
                page.get_by_text(LABS[name].page_title).first.wait_for()
                page.locator("canvas").first.wait_for()
                page.screenshot(path=str(tmp_path / f"{name}.png"))
                assert outside == [], f"{name}: requests left the machine: {outside}"
                assert errors == [], f"{name}: script errors: {errors}"
                page.close()
        finally:
            browser.close()


# ---------------------------------------------------------------- what a stranger may type


def _text_controls(cls: type) -> list[str]:
    """The dashboard's text parameters a visitor can set (``name`` is Panel's own, never shown)."""
    import param

    return [
        name
        for name, p in cls.param.objects().items()
        if isinstance(p, param.String) and name != "name" and (p.precedence is None or p.precedence >= 0)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_text_a_visitor_types_never_names_a_server_path_or_breaks_the_page(lab: Lab, tmp_path: Path):
    module = importlib.import_module(lab.widget_module)
    controls = _text_controls(module.Dashboard)
    if not controls:
        pytest.skip(f"{lab.name}'s dashboard has no text control")
    probe = tmp_path / "probe"
    served = module.dashboard()
    try:
        for name in controls:
            for value in (str(probe / "made-by-a-visitor.db"), "../../../../etc/passwd", "x" * 1_000_000, "ok\ud800"):
                setattr(served, name, value)
                assert not probe.exists(), f"{lab.name}.{name}: a visitor's text created {probe} on the server"
    finally:
        served.close()
