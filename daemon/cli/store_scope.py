"""What `stormd rfm` and `stormd segments` share: the database brought to the current
schema, a job context on it, and the store a command acts on (`--store`, or the only one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import click

from stormd.config.clock import Clock
from stormd.config.settings import Settings
from stormd.daemon.cli.common import run_command
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.paging import MAX_LIMIT, Page, PageRequest
from stormd.handlers.kernel.service import Actor, Call, ServiceError
from stormd.handlers.scoring.features import known_store_ids
from stormd.handlers.wiring import build_registry


@asynccontextmanager
async def job_context(settings: Settings) -> AsyncIterator[JobContext]:
    from stormd.schema.db.engine import make_engine, make_sessionmaker
    from stormd.schema.migrate import upgrade_database

    url = settings.database.url
    await upgrade_database(url)
    engine = make_engine(url)
    try:
        # The daemon's reactions too: a refresh run here moves segments, and segment-entry
        # automations react to that wherever it runs.
        yield JobContext(make_sessionmaker(engine), settings, Clock(), build_registry())
    finally:
        await engine.dispose()


async def resolve_store(job: JobContext, store_id: str | None) -> str:
    """`--store`, else the one store the database knows; otherwise a clear usage error."""
    if store_id:
        return store_id
    async with job.sessionmaker() as session:
        stores = await known_store_ids(session)
    if len(stores) == 1:
        return stores[0]
    if not stores:
        raise click.UsageError("the database knows no store yet: give --store")
    raise click.UsageError(f"several stores ({', '.join(stores)}): give --store")


def run_on_store(config_path: str | None, store_id: str | None,
                 work: Callable[[JobContext, str], Awaitable[Any]],
                 errors: tuple[type[Exception], ...] = ()) -> Any:
    """`work(job, store)` on the configured database (at the current schema) for `--store`
    or the only store; `errors` end the command with their message and exit status 1."""

    async def go(settings: Settings) -> Any:
        async with job_context(settings) as job:
            return await work(job, await resolve_store(job, store_id))

    return run_command(config_path, go, errors)


def parse_instant(value: str | None) -> datetime | None:
    """--as-of: ISO 8601 with a zone (a bare date is midnight UTC)."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time",
                                 param_hint="--as-of") from None
    if when.tzinfo is None:
        if "T" in value or " " in value:
            raise click.BadParameter(f"{value!r} needs a time zone, e.g. {value}+06:00",
                                     param_hint="--as-of")
        when = when.replace(tzinfo=UTC)
    return when


def run_service(config_path: str | None, store_id: str | None,
                work: Callable[[Call, str], Awaitable[Any]], *, any_store: bool = False,
                errors: tuple[type[Exception], ...] = ()) -> Any:
    """`work(call, store)` through the service layer as the person at the command line
    (their writes go to the audit log as `cli:<user>`), for `--store` or the only store
    (`any_store`: the store may be None). A refusal ends with its message and exit 1."""

    async def go(settings: Settings) -> Any:
        async with job_context(settings) as job:
            store = store_id if any_store else await resolve_store(job, store_id)
            return await work(Call(job, Actor.command_line()), store)

    return run_command(config_path, go, (ServiceError, *errors))


async def every_page(fetch: Callable[[PageRequest], Awaitable[Page[Any]]],
                     sort: str = "") -> list[Any]:
    """All the items of a paged list (the command line shows whole lists)."""
    items: list[Any] = []
    cursor = None
    while True:
        page = await fetch(PageRequest(limit=MAX_LIMIT, cursor=cursor, sort=sort))
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor
