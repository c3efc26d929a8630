"""`stormd messages` (the delivery log, filtered) and `stormd kpis` (the KPIs per store,
for all time or a period), each as a table or `--json`: the same service functions the
HTTP API's `/messages` and `/kpis` call."""

from __future__ import annotations

import click

from stormd.config.channels import CHANNELS
from stormd.daemon.cli.common import echo_json, echo_table, store_options
from stormd.daemon.cli.store_scope import parse_instant, run_service

# (JSON key, table heading): the delivery log's columns.
FIELDS = (
    ("id", "id"), ("storeId", "store"), ("customerId", "customer"), ("channel", "channel"),
    ("provider", "provider"), ("template", "template"), ("trigger", "trigger"),
    ("campaignId", "campaign"), ("status", "status"), ("cost", "cost"),
    ("createdAt", "created_at"), ("subject", "subject"), ("body", "body"),
)
TABLE_HIDES = ("subject",)


@click.command("messages")
@click.option("--customer", "customer_id", default=None, help="Only this customer.")
@click.option("--channel", type=click.Choice(CHANNELS), default=None,
              help="Only this channel.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="Newest N messages (0: all).")
@store_options
def messages_command(customer_id: str | None, channel: str | None, limit: int,
                     store_id: str | None, as_json: bool, config_path: str | None) -> None:
    """The delivery log, newest first: who got what, through which provider, at what cost."""
    from stormd.handlers.kernel.paging import MAX_LIMIT, PageRequest
    from stormd.handlers.outreach.service import list_messages

    async def work(call, store):
        rows, cursor = [], None
        while not limit or len(rows) < limit:
            size = MAX_LIMIT if not limit else min(MAX_LIMIT, limit - len(rows))
            page = await list_messages(call, store, PageRequest(size, cursor, "-id"),
                                       customer_id=customer_id, channel=channel)
            rows.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        return [m.model_dump(mode="json", by_alias=True) for m in rows]

    rows = run_service(config_path, store_id, work, any_store=True)
    shown = [{key: r[key] for key, _ in FIELDS} for r in rows]
    if as_json:
        echo_json(shown)
        return
    headings = dict(FIELDS)
    echo_table([{headings[k]: v for k, v in r.items()} for r in shown],
               [heading for key, heading in FIELDS if key not in TABLE_HIDES])


@click.command("kpis")
@click.option("--from", "since", default=None, help="From this instant (ISO 8601 with zone).")
@click.option("--to", "until", default=None, help="Up to this instant (default: now).")
@store_options
def kpis_command(config_path: str | None, store_id: str | None, as_json: bool,
                 since: str | None, until: str | None) -> None:
    """Cart recovery, revenue, messaging cost, engagement and automation rates per store."""
    from stormd.handlers.reporting.figures import show_kpi
    from stormd.handlers.reporting.service import all_kpis

    start, end = parse_instant(since), parse_instant(until)
    rows = run_service(config_path, store_id,
                       lambda call, store: all_kpis(call, store, start, end), any_store=True)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("(no stores yet)")
    for row in rows:
        click.echo(f"store {row['store']}")
        for name, value in row.items():
            if name != "store":
                click.echo(f"  {name.replace('_', ' '):<26} {show_kpi(name, value)}")
