"""`stormd rfm` (CONTRACT §7)."""

import click

from stormd.daemon.commands.common import not_built_yet

command = click.Command("rfm", callback=not_built_yet("RFM scoring", 5),
                        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
