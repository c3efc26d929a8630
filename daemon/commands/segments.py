"""`stormd segments` (CONTRACT §7)."""

import click

from stormd.daemon.commands.common import not_built_yet

command = click.Command("segments", callback=not_built_yet("segments", 5),
                        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
