"""`stormd messages` (the delivery log, filtered) and `stormd kpis` (the KPIs per store),
each as a table or `--json`."""

from __future__ import annotations

import sys
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from stormd.config.channels import CHANNELS
from stormd.daemon.cli.common import (
    config_option,
    echo_json,
    echo_table,
    json_option,
    run_async,
    run_command,
    settings_or_exit,
    store_option,
    store_options,
)
from stormd.schema.marketing.messages import Message

# (JSON key, table heading, column)
FIELDS = (
    ("id", "id", Message.id),
    ("storeId", "store", Message.store_id),
    ("customerId", "customer", Message.customer_id),
    ("channel", "channel", Message.channel),
    ("provider", "provider", Message.provider),
    ("template", "template", Message.template),
    ("trigger", "trigger", Message.trigger),
    ("campaignId", "campaign", Message.campaign_id),
    ("status", "status", Message.status),
    ("cost", "cost", Message.cost),
    ("createdAt", "created_at", Message.created_at),
    ("subject", "subject", Message.subject),
    ("body", "body", Message.body),
)
TABLE_HIDES = ("subject",)


@click.command("messages")
@click.option("--customer", "customer_id", default=None, help="Only this customer.")
@click.option("--channel", type=click.Choice(CHANNELS), default=None,
              help="Only this channel.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="Newest N messages (0: all).")
@store_options
def messages_command(customer_id: str | None, channel: str | None, limit: int, store_id: str | None,
            as_json: bool, config_path: str | None) -> None:
    """The delivery log, newest first: who got what, through which provider, at what cost."""
    rows = run_command(config_path, lambda settings: _delivery_log(
        settings.database.url, store_id, customer_id, channel, limit))
    if as_json:
        echo_json(rows)
        return
    headings = {key: heading for key, heading, _ in FIELDS}
    echo_table([{headings[k]: v for k, v in r.items()} for r in rows],
               [heading for key, heading, _ in FIELDS if key not in TABLE_HIDES])


async def _delivery_log(url: str, store_id: str | None, customer_id: str | None,
                        channel: str | None, limit: int) -> list[dict[str, Any]]:
    from stormd.schema.db.engine import make_engine
    from stormd.schema.migrate import upgrade_database

    await upgrade_database(url)
    query = select(*(column for _, _, column in FIELDS)).order_by(Message.id.desc())
    if store_id is not None:
        query = query.where(Message.store_id == store_id)
    if customer_id is not None:
        query = query.where(Message.customer_id == customer_id)
    if channel is not None:
        query = query.where(Message.channel == channel)
    if limit:
        query = query.limit(limit)
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(query)
            return [dict(zip((key for key, _, _ in FIELDS), row)) for row in result]
    finally:
        await engine.dispose()






@click.command("kpis")
@config_option
@store_option
@json_option
def kpis_command(config_path: str | None, store_id: str | None, as_json: bool) -> None:
    """Cart recovery, revenue, messaging cost, engagement and automation rates per store."""
    settings = settings_or_exit(config_path)
    try:
        rows = run_async(_compute_kpis(settings.database.url, store_id))
    except DBAPIError as exc:
        reason = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
        click.echo(f"stormd: cannot read the database ({reason}); "
                   "has `stormd db upgrade` been run?", err=True)
        sys.exit(1)
    if as_json:
        echo_json(rows)
        return
    from stormd.handlers.reporting.figures import show_kpi

    if not rows:
        click.echo("(no stores yet)")
    for row in rows:
        click.echo(f"store {row['store']}")
        for name, value in row.items():
            if name != "store":
                click.echo(f"  {name.replace('_', ' '):<26} {show_kpi(name, value)}")


async def _compute_kpis(url: str, store_id: str | None) -> list[dict[str, Any]]:
    from stormd.handlers.reporting.kpis import compute_kpis
    from stormd.schema.db.engine import make_engine, make_sessionmaker

    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            return await compute_kpis(session, store_id)
    finally:
        await engine.dispose()

