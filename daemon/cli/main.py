"""The `stormd` command: one sub-command per verb (docs/cli.md)."""

from __future__ import annotations

import click

from stormd.daemon import __version__
from stormd.daemon.cli import (
    campaigns,
    config_cmd,
    db,
    importer,
    reports,
    rfm,
    segments,
    serve,
    sms_info,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stormd")
def main() -> None:
    """stormd: the marketing brain of StormCom stores."""


# Every command, in help order.
for _command in (serve.run_command, serve.demo_command, config_cmd.command, db.command,
                 importer.command, rfm.command, segments.command, reports.messages_command,
                 reports.kpis_command, sms_info.command, campaigns.command):
    main.add_command(_command)
