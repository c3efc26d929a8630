"""`stormd db` (CONTRACT §7)."""

import click

from stormd.daemon.commands.common import not_built_yet

command = click.Command("db", callback=not_built_yet("db upgrade", 2),
                        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
