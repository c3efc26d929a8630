"""The `stormd` command: one sub-command per verb of CONTRACT §7."""

from __future__ import annotations

import importlib

import click

from stormd.daemon import __version__

# Each module defines one click command or group named `command`.
COMMAND_MODULES = (
    "run", "demo", "config_cmd", "db", "importer", "rfm", "segments", "messages",
    "kpis", "sms_info", "campaigns",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stormd")
def main() -> None:
    """stormd: the marketing brain of StormCom stores."""


def _register() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"stormd.daemon.commands.{name}")
        main.add_command(module.command)


_register()
