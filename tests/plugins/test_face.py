"""The plugin face: `stormd.plugins` is everything a channel plugin imports, the built-ins
and the example plugins use nothing else of stormd, and importing it stays cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import stormd.plugins
from stormd.plugins import _hookspecs

HERE = Path(__file__).parent
PLUGINS = HERE.parents[1] / "plugins"
FACE = "stormd.plugins"
HOOKS = sorted(n for n, f in vars(_hookspecs).items() if hasattr(f, "stormd_spec"))


def stormd_imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, module) for every import of a stormd module in `path`, relative imports
    resolved against `package`, names taken from `stormd.plugins` counted as modules
    when private (`from stormd.plugins import _models`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(parts + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names
                      if module == FACE and alias.name.startswith("_")]
    return [(line, m) for line, m in found if m == "stormd" or m.startswith("stormd.")]


def outside_the_face(path: Path, package: str, own: str | None) -> list[str]:
    return [f"{path.relative_to(HERE.parents[1])}:{line} imports {module}"
            for line, module in stormd_imports(path, package)
            if module != FACE and not (own and (module == own or module.startswith(own + ".")))]


def test_builtins_import_only_the_face_and_their_own_helpers():
    builtin = "stormd.plugins.builtin"
    modules = sorted((PLUGINS / "builtin").glob("*.py"))
    assert len(modules) > 8
    offending = [line for path in modules for line in outside_the_face(path, builtin, builtin)]
    assert offending == [], "built-in channel plugins may import only `stormd.plugins` " \
        "(the public face) and `stormd.plugins.builtin.*`:\n" + "\n".join(offending)


@pytest.mark.parametrize("project", ["example_plugin", "typo_plugin"])
def test_third_party_plugins_import_only_the_face(project):
    paths = sorted((HERE / project).rglob("*.py"))
    assert paths
    offending = [line for path in paths for line in outside_the_face(path, path.parent.name,
                                                                       None)]
    assert offending == [], "\n".join(offending)


def test_the_boundary_check_catches_a_reach_behind_the_face(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("from stormd.plugins import hookimpl, _models\n"
                      "from ..delivery.manager import ChannelPlugins\n"
                      "from .transport import request\n"
                      "import stormd.schema.metrics\n")
    assert [m for _, m in stormd_imports(sneaky, "stormd.plugins.builtin")] == [
        "stormd.plugins", "stormd.plugins._models", "stormd.plugins.delivery.manager",
        "stormd.plugins.builtin.transport", "stormd.schema.metrics"]


def test_every_exported_name_exists_and_the_face_names_every_hook():
    assert len(set(stormd.plugins.__all__)) == len(stormd.plugins.__all__)
    for name in stormd.plugins.__all__:
        assert getattr(stormd.plugins, name) is not None, name
    assert not [n for n in stormd.plugins.__all__ if n.startswith("_")]
    for hook in HOOKS:
        assert f"`{hook}(" in stormd.plugins.__doc__, hook
    assert {"stormd_provider", "stormd_send", "stormd_parse_webhook"} <= set(HOOKS)


def test_importing_the_face_loads_nothing_heavy():
    probe = ("import sys; import stormd.plugins; "
             "print('\\n'.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                text=True, check=True, timeout=60).stdout.split())
    assert FACE in loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in (
        "sqlalchemy", "aiohttp", "pydantic", "nats", "faststream", "numpy", "jinja2")
        or m.startswith(("stormd.plugins.delivery", "stormd.plugins.policy",
                         "stormd.plugins.builtin", "stormd.schema", "stormd.handlers",
                         "stormd.daemon", "stormd.config.settings")))
    assert heavy == []
