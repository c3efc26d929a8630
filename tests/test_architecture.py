"""The house rules that keep the code readable, checked so a change cannot quietly break
them: imports run one way, no module imports itself round a cycle, no folder grows past
about a dozen modules, handlers are registered in one place and effects never travel as
session side channels, and nothing points at a document outside the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("daemon", "handlers", "plugins", "schema", "config")
MAX_MODULES = 13  # "about a dozen" a folder


def _sources() -> list[Path]:
    return [p for top in PACKAGES for p in (ROOT / top).rglob("*.py")
            if "migrations" not in p.parts]


def test_imports_run_one_way():
    """import-linter's layers contract (pyproject.toml): an upward import fails here with
    the importing module and line."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    done = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_module_imports_itself_round_a_cycle():
    graph = grimp.build_graph(*(f"stormd.{p}" for p in PACKAGES),
                              exclude_type_checking_imports=True, cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert cycles == []


def test_no_folder_holds_more_than_about_a_dozen_modules():
    crowded = {}
    for top in PACKAGES:
        for folder in [ROOT / top, *(d for d in (ROOT / top).rglob("*") if d.is_dir())]:
            modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
            if "versions" not in folder.parts and len(modules) > MAX_MODULES:
                crowded[str(folder.relative_to(ROOT))] = len(modules)
    assert crowded == {}


def test_effects_never_travel_through_session_info():
    found = [f"{p.relative_to(ROOT)}:{n}" for p in _sources()
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"\.info\b\s*[\[.]", line) and "session" in line]
    assert found == []


def test_handlers_are_registered_only_by_the_wiring():
    """No handler module registers itself on import: registry decorators and calls appear
    only in handlers/wiring.py (and the registry that defines them)."""
    allowed = {ROOT / "handlers" / "wiring.py", ROOT / "handlers" / "kernel" / "registry.py"}
    pattern = re.compile(r"\.(on_(event|event_batch|timer|timer_batch|segment_change|cron|"
                         r"request)|react_to(_batch|_timer_batch)?)\(|^@on_", re.M)
    found = [str(p.relative_to(ROOT)) for p in _sources()
             if p not in allowed and pattern.search(p.read_text())]
    assert found == []


@pytest.mark.parametrize("pattern", ["CONTRACT §", "seed §", "seed H.", "FACTS.md",
                                     "../shared"])
def test_the_repository_points_at_nothing_outside_it(pattern):
    files = [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts
             and p.suffix in {".py", ".md", ".toml", ".json", ".yml", ".yaml", ".service",
                              ".txt", ".html", ".js", ".css"}
             and p != Path(__file__)]
    found = [f"{p.relative_to(ROOT)}:{n}" for p in files
             for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
             if pattern in line]
    assert found == []


def test_paths_the_docs_and_docstrings_name_exist():
    """A path to a file of the repository, named in the docs or a docstring, is there (a
    moved module leaves no stale pointer behind)."""
    path = re.compile(r"(?<![\w./-])((?:daemon|handlers|plugins|schema|config|tests|benchmarks"
                      r"|deploy|docs)/[\w./-]*\w)")
    texts = [*_sources(), *(ROOT / "docs").glob("*.md"), ROOT / "README.md",
             *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tests").rglob("*.py")]
    missing = [f"{p.relative_to(ROOT)}:{n}: {m.group(1)}" for p in texts
               for n, line in enumerate(p.read_text().splitlines(), 1)
               if "github.com/" not in line
               for m in path.finditer(line)
               if not (ROOT / m.group(1).rstrip(".")).exists() and "<" not in m.group(1)]
    assert missing == []


def test_the_built_package_carries_every_module_and_data_file(tmp_path):
    """A wheel built from the tree holds every file of the five packages (a new folder
    missing from pyproject's package list, or data missing from package-data, would install
    a stormd that fails at import)."""
    import zipfile

    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("stormd-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("stormd/")}
    expected = {"stormd/" + str(p.relative_to(ROOT)) for top in PACKAGES
                for p in (ROOT / top).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert sorted(expected - shipped) == []
