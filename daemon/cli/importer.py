"""`stormd import {customers,products,orders} FILE [--store S]`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from stormd.daemon.cli.common import config_option, run_async, settings_or_exit, store_option
from stormd.handlers.imports.bulk import KINDS, ImportFailed, ImportResult, import_file


@click.command("import")
@click.argument("kind", type=click.Choice(sorted(KINDS)))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@store_option
@config_option
def command(kind: str, file: Path, store_id: str | None, config_path: str | None) -> None:
    """Bulk-load history from FILE (.csv or .jsonl); all or nothing, safe to repeat.

    Rows carry the event's data fields (camelCase) plus storeId (or --store); orders also
    occurredAt and their latest status. CSV: dotted columns for nested fields
    (consent.sms), JSON cells for items, pushTokens and promotionCodes.
    """
    if file.suffix.lower() not in (".csv", ".jsonl"):
        raise click.BadParameter(f"{file.name}: use a .csv or .jsonl file", param_hint="FILE")
    settings = settings_or_exit(config_path)
    try:
        result = run_async(_run(settings.database.url, kind, file, store_id,
                                settings.daemon.timezone))
    except ImportFailed as exc:
        click.echo(f"stormd: {file}: {exc}; nothing was imported", err=True)
        sys.exit(1)
    click.echo(f"imported {result.rows} {kind} in {result.seconds:.2f}s "
               f"({result.rows_per_second:,.0f} {kind}/s; {sum(result.written.values())} rows "
               f"written to {', '.join(result.written)}: {result.written_per_second:,.0f} rows/s)")


async def _run(url: str, kind: str, file: Path, store_id: str | None, timezone: str
               ) -> ImportResult:
    from stormd.config.clock import Clock
    from stormd.schema.db.engine import make_engine, make_sessionmaker
    from stormd.schema.migrate import upgrade_database

    await upgrade_database(url)
    engine = make_engine(url)
    try:
        return await import_file(make_sessionmaker(engine), kind, file, store=store_id,
                                 now=Clock().now(), timezone=timezone)
    finally:
        await engine.dispose()
