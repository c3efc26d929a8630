"""`stormd rfm run [--store S] [--as-of T]`: one snapshot and segment
refresh now; prints the counts per segment and the run time."""

from __future__ import annotations

import sys

import click

from stormd.daemon.cli.common import echo_json, echo_table, run_command, store_options
from stormd.daemon.cli.store_scope import job_context, parse_instant


@click.group("rfm")
def command() -> None:
    """RFM scoring and the segment refresh that follows it."""


@command.command("run")
@store_options
@click.option("--as-of", "as_of", default=None,
              help="Score as of this instant (ISO 8601 with zone; default now).")
def run(config_path: str | None, store_id: str | None, as_of: str | None, as_json: bool) -> None:
    """Score every store (or one) and refresh its segments."""
    from stormd.handlers.scoring.nightly import run_all_stores

    async def score(settings):
        when = parse_instant(as_of)
        async with job_context(settings) as job:
            return await run_all_stores(job, when, store_id)

    reports = run_command(config_path, score)
    if as_json:
        echo_json([r.to_json() for r in reports])
    else:
        for r in reports:
            click.echo(f"store {r.store_id}: run {r.run_id} {r.status} as of "
                       f"{r.as_of.isoformat(timespec='seconds')}: {r.population} customers "
                       f"scored, {r.rows} snapshot rows in {r.seconds:.2f}s")
            echo_table([{"segment": slug, "members": c.members, "entered": len(c.entered),
                         "backfill": len(c.backfill), "exited": len(c.exited),
                         "drift": "ALERT" if slug in r.drifted else ""}
                        for slug, c in r.segments.items()],
                       ["segment", "members", "entered", "backfill", "exited", "drift"])
        if not reports:
            click.echo("no stores to score")
    if any(r.status != "OK" for r in reports):
        sys.exit(1)
