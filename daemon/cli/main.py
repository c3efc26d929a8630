"""The `stormd` command: one sub-command per verb (docs/cli.md)."""

from __future__ import annotations

import click

from stormd.daemon import __version__
from stormd.daemon.cli import (
    campaigns,
    config_cmd,
    db,
    demo,
    importer,
    kpis,
    messages,
    rfm,
    run,
    segments,
    sms_info,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stormd")
def main() -> None:
    """stormd: the marketing brain of StormCom stores."""


# Each module defines one click command or group named `command`, listed in help order.
for _module in (run, demo, config_cmd, db, importer, rfm, segments, messages, kpis, sms_info,
                campaigns):
    main.add_command(_module.command)
