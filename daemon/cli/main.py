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
                 importer.command, rfm.command, rfm.clv_command, segments.command, reports.messages_command,
                 reports.kpis_command, sms_info.command, campaigns.command):
    main.add_command(_command)


def cli_reference() -> str:
    """docs/cli.md: every command with its usage, help and options, from the click tree
    itself (tests/daemon/cli/test_cli_reference.py keeps the file current)."""
    out = ["# The `stormd` command", "",
           "Generated from the commands themselves; `--json` gives machine-readable output "
           "on each listing. Regenerate with "
           "`python3 -c \"from stormd.daemon.cli.main import cli_reference; "
           "print(cli_reference(), end='')\" > docs/cli.md`.", ""]

    def walk(command: click.Command, path: list[str]) -> None:
        ctx = click.Context(command, info_name=" ".join(path))
        if path != ["stormd"]:
            out.extend([f"{'#' * min(len(path), 4)} `{' '.join(path)}`", "",
                        "```", command.get_usage(ctx).removeprefix("Usage: "), "```", ""])
            if command.help:
                out.extend([click.unstyle(command.help).strip(), ""])
            rows = [p.get_help_record(ctx) for p in command.get_params(ctx)]
            rows = [r for r in rows if r and r[0] not in ("--help", "-h, --help")]
            if rows:
                out.extend(["| option | meaning |", "| --- | --- |"])
                out.extend(f"| `{name}` | {text.replace('|', '/')} |" for name, text in rows)
                out.append("")
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])

    walk(main, ["stormd"])
    return "\n".join(out).rstrip() + "\n"
