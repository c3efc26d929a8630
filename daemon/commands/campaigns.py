"""`stormd campaigns` (CONTRACT §7)."""

import click

from stormd.daemon.commands.common import not_built_yet

command = click.Command("campaigns", callback=not_built_yet("campaigns", 7),
                        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
