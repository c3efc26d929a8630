"""docs/cli.md is the command reference generated from the click tree: it must be current,
so every command and option a user can type is documented."""

from __future__ import annotations

from pathlib import Path

from stormd.daemon.cli.main import cli_reference, main

DOC = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def test_docs_cli_md_is_the_current_reference():
    assert DOC.read_text() == cli_reference(), (
        "docs/cli.md is stale: regenerate it with the command in its first paragraph")


def test_the_reference_names_every_command_and_subcommand():
    text = DOC.read_text()
    for name, command in main.commands.items():
        assert f"`stormd {name}`" in text
        for sub in getattr(command, "commands", {}):
            assert f"`stormd {name} {sub}`" in text
