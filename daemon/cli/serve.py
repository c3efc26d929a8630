"""`stormd run` (the daemon, until SIGTERM/SIGINT; then it drains and exits 0) and
`stormd demo` (the embedded daemon plays a storefront day through NATS and prints what
the automations did and the KPIs)."""

from __future__ import annotations

import logging
import sys

import click

from stormd.config.secrets import mask_text
from stormd.daemon.cli.common import (
    config_option,
    echo_json,
    json_option,
    providers_or_exit,
    run_async,
    settings_or_exit,
)
from stormd.daemon.runtime.logs import configure_logging


@click.command("run")
@config_option
def run_command(config_path: str | None) -> None:
    """Run the daemon until SIGTERM/SIGINT, then drain in-flight work and exit 0."""
    from stormd.daemon.runtime.app import Daemon

    settings = settings_or_exit(config_path)
    providers_or_exit(settings)
    configure_logging(settings.daemon.log_format, settings.daemon.log_level)
    try:
        run_async(Daemon(settings).run())
    except Exception as exc:  # one line naming what failed, not a traceback
        logging.getLogger("stormd").error("stormd could not run: %s: %s", type(exc).__name__,
                                          mask_text(str(exc)))
        sys.exit(1)





@click.command("demo")
@click.option("--customers", default=300, show_default=True, help="Shoppers in the store.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same day).")
@json_option
def demo_command(customers: int, seed: int, as_json: bool) -> None:
    """Start the embedded daemon, play a realistic storefront day, report what happened."""
    from stormd.daemon.demo.day import run_demo

    configure_logging("text", "ERROR")
    if as_json:
        echo_json(run_async(run_demo(customers=customers, seed=seed, say=lambda _: None)))
    else:
        run_async(run_demo(customers=customers, seed=seed))
