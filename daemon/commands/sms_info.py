"""`stormd sms-info` (CONTRACT §7)."""

import click

from stormd.daemon.commands.common import not_built_yet

command = click.Command("sms-info", callback=not_built_yet("sms-info", 6),
                        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
