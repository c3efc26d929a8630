"""`stormd demo` (CONTRACT §7): the embedded daemon plays a storefront day through NATS and
prints what the automations did and the KPIs."""

from __future__ import annotations

import click

from stormd.daemon.cli.common import echo_json, json_option, run_async
from stormd.daemon.runtime.logs import configure_logging


@click.command("demo")
@click.option("--customers", default=300, show_default=True, help="Shoppers in the store.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same day).")
@json_option
def command(customers: int, seed: int, as_json: bool) -> None:
    """Start the embedded daemon, play a realistic storefront day, report what happened."""
    from stormd.daemon.demo.day import run_demo

    configure_logging("text", "ERROR")
    if as_json:
        echo_json(run_async(run_demo(customers=customers, seed=seed, say=lambda _: None)))
    else:
        run_async(run_demo(customers=customers, seed=seed))
