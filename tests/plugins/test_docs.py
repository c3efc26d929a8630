"""The plugin docs stay honest: every hook is in the README's hook table and in
docs/plugins.md with its real arguments, neither names a hook that does not exist, and
the guide covers every name of the public face and every field of its values."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import stormd.plugins
from stormd.plugins import _hookspecs

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "plugins.md"
HOOKS = {name: f for name, f in vars(_hookspecs).items() if hasattr(f, "stormd_spec")}
ROW = re.compile(r"^\| `(stormd_\w+)\(([^)]*)\)` \|", re.M)


def readme_plugin_section() -> str:
    text = README.read_text()
    start = text.index("## Write your own channel plugin")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


DOCUMENTS = {"README.md": readme_plugin_section, "docs/plugins.md": GUIDE.read_text}


def table(document: str) -> dict[str, str]:
    """hook name -> its argument list, from the document's hook table rows."""
    rows = ROW.findall(DOCUMENTS[document]())
    assert len(rows) == len(dict(rows)), f"a hook is listed twice in {document}"
    return dict(rows)


def arguments(hook: str) -> str:
    return ", ".join(inspect.signature(HOOKS[hook]).parameters)


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_is_in_the_table_with_its_arguments(document, hook):
    rows = table(document)
    assert hook in rows, f"{hook} is missing from the hook table in {document}"
    assert rows[hook] == arguments(hook), f"{document} shows {hook}({rows[hook]})"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_tables_name_no_hook_that_does_not_exist(document):
    assert sorted(set(table(document)) - set(HOOKS)) == []


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_has_its_own_section_in_the_guide(hook):
    assert f"#### `{hook}({arguments(hook)})`" in GUIDE.read_text()


def test_the_guide_covers_every_public_name_and_value_field():
    guide = GUIDE.read_text()
    assert [n for n in stormd.plugins.__all__ if not re.search(rf"\b{n}\b", guide)] == []
    for value in (stormd.plugins.ProviderInfo, stormd.plugins.Outgoing,
                  stormd.plugins.WebhookRequest, stormd.plugins.WebhookResult,
                  stormd.plugins.StatusUpdate, stormd.plugins.Health):
        missing = [f.name for f in dataclasses.fields(value) if f"`{f.name}`" not in guide]
        assert missing == [], f"{value.__name__} fields not in docs/plugins.md: {missing}"
