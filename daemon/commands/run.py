"""`stormd run` (CONTRACT §7)."""

import click

from stormd.daemon.commands.common import not_built_yet

command = click.Command("run", callback=not_built_yet("the daemon", 3),
                        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
