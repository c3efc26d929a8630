"""`stormd kpis` (CONTRACT §7)."""

import click

from stormd.daemon.commands.common import not_built_yet

command = click.Command("kpis", callback=not_built_yet("KPIs", 4),
                        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
