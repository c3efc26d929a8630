"""`stormd run` (CONTRACT §7): the daemon, until SIGTERM/SIGINT; then it drains and exits 0."""

from __future__ import annotations

import logging
import sys

import click

from stormd.daemon.cli.common import (
    config_option,
    providers_or_exit,
    run_async,
    settings_or_exit,
)
from stormd.daemon.runtime.logs import configure_logging


@click.command("run")
@config_option
def command(config_path: str | None) -> None:
    """Run the daemon until SIGTERM/SIGINT, then drain in-flight work and exit 0."""
    from stormd.daemon.runtime.app import Daemon

    settings = settings_or_exit(config_path)
    providers_or_exit(settings)
    configure_logging(settings.daemon.log_format, settings.daemon.log_level)
    try:
        run_async(Daemon(settings).run())
    except Exception as exc:  # one line naming what failed, not a traceback
        logging.getLogger("stormd").error("stormd could not run: %s: %s", type(exc).__name__, exc)
        sys.exit(1)
