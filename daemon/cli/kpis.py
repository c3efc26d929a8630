"""`stormd kpis [--store S] [--json]` (CONTRACT §7, §8): the KPIs per store."""

from __future__ import annotations

import sys
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from stormd.daemon.cli.common import (
    config_option,
    echo_json,
    json_option,
    run_async,
    settings_or_exit,
    store_option,
)


@click.command("kpis")
@config_option
@store_option
@json_option
def command(config_path: str | None, store_id: str | None, as_json: bool) -> None:
    """Cart recovery, revenue, messaging cost, engagement and automation rates per store."""
    settings = settings_or_exit(config_path)
    try:
        rows = run_async(_compute(settings.database.url, store_id))
    except DBAPIError as exc:
        reason = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
        click.echo(f"stormd: cannot read the database ({reason}); "
                   "has `stormd db upgrade` been run?", err=True)
        sys.exit(1)
    if as_json:
        echo_json(rows)
        return
    from stormd.handlers.reporting.kpis import show_kpi

    if not rows:
        click.echo("(no stores yet)")
    for row in rows:
        click.echo(f"store {row['store']}")
        for name, value in row.items():
            if name != "store":
                click.echo(f"  {name.replace('_', ' '):<26} {show_kpi(name, value)}")


async def _compute(url: str, store_id: str | None) -> list[dict[str, Any]]:
    from stormd.handlers.reporting.kpis import compute_kpis
    from stormd.schema.db.engine import make_engine, make_sessionmaker

    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            return await compute_kpis(session, store_id)
    finally:
        await engine.dispose()

