"""Per-customer order aggregates as of an instant, computed in SQL on either database.

RFM, lifecycle and real-time re-scoring all read the same aggregates, so a customer is
counted the same way by the nightly run and by the event that re-scores them. Times come
back as exact epoch microseconds and money as exact integer cents: whole-day counts and
quintile ties are then plain integer arithmetic (numpy), identical on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    select,
    type_coerce,
    union,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from stormd.schema.marketing.messages import EmailEvent, Message
from stormd.schema.shop.customers import Customer
from stormd.schema.shop.orders import COMPLETED_STATUSES, Order
from stormd.schema.shop.stores import Store

US_PER_DAY = 86_400 * 1_000_000
# Bound parameters per statement stay well below SQLite's and asyncpg's limits.
ID_CHUNK = 5_000
PART_ROWS = 100_000


def dialect_of(session: AsyncSession) -> str:
    return session.bind.dialect.name


def whole_days(as_of_us: int | np.ndarray, then_us: int | np.ndarray) -> Any:
    """floor((T - t) / 24 h), stormd's whole-day count."""
    return (np.asarray(as_of_us, dtype=np.int64) - then_us) // US_PER_DAY


def sql_epoch_us(column: Any, dialect: str) -> ColumnElement[int]:
    """A stored UTC timestamp as epoch microseconds.

    SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' text (schema/base.py): whole seconds from
    strftime plus the six fraction digits, so no float rounding touches the boundary.
    """
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), BigInteger) * 1_000_000 + cast(
            func.substr(column, 21, 6), Integer
        )
    return cast(func.floor(func.extract("epoch", column) * 1_000_000), BigInteger)


def sql_cents(column: Any, dialect: str) -> ColumnElement[int]:
    """A Money value as integer cents (SQLite stores NUMERIC as a float)."""
    if dialect == "sqlite":
        return cast(func.round(column * 100), BigInteger)
    return cast(column * 100, BigInteger)


def completed_orders(store_id: str, as_of: datetime) -> ColumnElement[bool]:
    """Orders that count for RFM at T: latest status completed, placed at or before T."""
    o = Order.__table__.c
    return and_(o.store_id == store_id, o.status.in_(COMPLETED_STATUSES), o.occurred_at <= as_of)


@dataclass
class Aggregates:
    """Completed-order aggregates of the customers with at least one, as parallel arrays."""

    customer_ids: list[str]
    orders_count: np.ndarray  # completed orders at or before T, all time
    orders_total_cents: np.ndarray
    first_us: np.ndarray
    last_us: np.ndarray
    frequency: np.ndarray  # completed orders in (T - window, T]
    monetary_cents: np.ndarray
    # On SQLite, first/last as the stored text too: written back as read, since formatting
    # a million timestamps costs a second.
    first_text: list[str] | None = None
    last_text: list[str] | None = None

    def __len__(self) -> int:
        return len(self.customer_ids)

    def part(self, rows: slice) -> Aggregates:
        return Aggregates(self.customer_ids[rows], self.orders_count[rows],
                          self.orders_total_cents[rows], self.first_us[rows], self.last_us[rows],
                          self.frequency[rows], self.monetary_cents[rows],
                          None if self.first_text is None else self.first_text[rows],
                          None if self.last_text is None else self.last_text[rows])

    def first_order_at(self) -> Any:
        """First-order times as `write_columns` takes them."""
        return self.first_us if self.first_text is None else self.first_text

    def last_order_at(self) -> Any:
        return self.last_us if self.last_text is None else self.last_text


def _stored_time(value: Any, dialect: str) -> ColumnElement[Any]:
    """A timestamp of the aggregate: SQLite's stored text as is (numpy parses a million
    in a tenth of the time SQLite's strftime takes), elsewhere epoch microseconds."""
    if dialect == "sqlite":
        return type_coerce(value, String)
    return sql_epoch_us(value, dialect)


def _epoch_column(values: tuple) -> np.ndarray:
    """Epoch microseconds of a column of `_stored_time` values."""
    if values and isinstance(values[0], str):
        return np.array(values, dtype="datetime64[us]").astype(np.int64)
    return np.array(values, dtype=np.int64)


@functools.lru_cache(maxsize=8)
def _aggregate_query(dialect: str, some: bool) -> Any:
    """The GROUP BY, built once per dialect with bound parameters `store`, `as_of`,
    `window_start` (and the expanding `ids` for some customers)."""
    o = Order.__table__.c
    as_of = bindparam("as_of", type_=o.occurred_at.type)
    in_window = o.occurred_at > bindparam("window_start", type_=o.occurred_at.type)
    cents = sql_cents(o.total, dialect)
    query = (
        select(
            o.customer_id,
            func.count(),
            func.sum(cents),
            *(_stored_time(f(o.occurred_at), dialect) for f in (func.min, func.max)),
            func.sum(case((in_window, 1), else_=0)),
            func.sum(case((in_window, cents), else_=0)),
        )
        .where(completed_orders(bindparam("store", type_=o.store_id.type), as_of))
        .group_by(o.customer_id)
    )
    if some:
        query = query.where(o.customer_id.in_(bindparam("ids", expanding=True)))
    return query


async def customer_aggregates(
    session: AsyncSession,
    store_id: str,
    as_of: datetime,
    window_days: int,
    customer_ids: Iterable[str] | None = None,
) -> Aggregates:
    """One GROUP BY over the store's completed orders (optionally only some customers)."""
    query = _aggregate_query(dialect_of(session), customer_ids is not None)
    params = {"store": store_id, "as_of": as_of,
              "window_start": as_of - timedelta(days=window_days)}
    ids: list[str] = []
    parts: list[np.ndarray] = []
    texts: tuple[list[str], list[str]] = ([], [])
    if customer_ids is None:
        # The whole store straight from the driver's cursor.
        batches = [row_parts(session, query, PART_ROWS, params)]
    else:
        # A few customers (re-scoring): SQLAlchemy's compiled cache, one query per chunk.
        wanted = list(dict.fromkeys(customer_ids))
        batches = [_one_part(session, query, {**params, "ids": wanted[start:start + ID_CHUNK]})
                   for start in range(0, len(wanted), ID_CHUNK)]
    for each in batches:
        async for rows in each:
            if rows:
                columns = list(zip(*rows))
                ids.extend(columns[0])
                if isinstance(columns[3][0], str):
                    texts[0].extend(columns[3])
                    texts[1].extend(columns[4])
                parts.append(np.stack([_epoch_column(c) if k in (2, 3) else
                                       np.array(c, dtype=np.int64)
                                       for k, c in enumerate(columns[1:])]))
    values = np.concatenate(parts, axis=1) if parts else np.zeros((6, 0), dtype=np.int64)
    if texts[0] and len(texts[0]) == len(ids):
        return Aggregates(ids, *values, *texts)
    return Aggregates(ids, *values)


# Delivery-log statuses of an e-mail handed to a provider, and the engagement that shows
# an e-mail was opened (a click without an open is a mail client hiding its images).
SENT_STATUSES = ("sent", "delivered", "read")
OPENED = ("OPEN", "CLICK")


@dataclass(frozen=True)
class Engagement:
    """A customer's e-mail engagement as of T: the last open (epoch us, None if never),
    e-mails sent in the engagement window and how many of those were opened."""

    last_open_us: int | None = None
    sent: int = 0
    opened: int = 0


@functools.lru_cache(maxsize=8)
def _engagement_queries(dialect: str, some: bool) -> tuple[Any, Any]:
    """(sent and opened per customer, last open per customer), with bound parameters
    `store`, `as_of`, `window_start` (and the expanding `ids`).

    E-mails sent: stormd's own handed to a provider (the delivery log) and those the
    storefront reported (`email.sent`, or an open or click of an e-mail it did not report
    sending), each once by message id, in (T - window, T]; opened: those of them with an
    open or click at or before T."""
    m, e = Message.__table__.c, EmailEvent.__table__.c
    store = bindparam("store", type_=m.store_id.type)
    as_of = bindparam("as_of", type_=m.created_at.type)
    start = bindparam("window_start", type_=m.created_at.type)
    ids = bindparam("ids", expanding=True)

    def mine(column: Any) -> list[Any]:
        return [column.is_not(None)] + ([column.in_(ids)] if some else [])

    sent = union(
        select(m.customer_id, cast(m.id, String).label("mid")).where(
            m.store_id == store, m.channel == "email", m.status.in_(SENT_STATUSES),
            m.created_at > start, m.created_at <= as_of, *mine(m.customer_id)),
        select(e.customer_id, e.message_id).where(
            e.store_id == store, e.type.in_(("SENT", *OPENED)), e.occurred_at > start,
            e.occurred_at <= as_of, *mine(e.customer_id)),
    ).subquery()
    opened = (select(e.customer_id, e.message_id).where(
        e.store_id == store, e.type.in_(OPENED), e.occurred_at <= as_of, *mine(e.customer_id))
        .distinct().subquery())
    counts = (select(sent.c.customer_id, func.count(), func.count(opened.c.message_id))
              .select_from(sent.outerjoin(opened, and_(
                  opened.c.customer_id == sent.c.customer_id,
                  opened.c.message_id == sent.c.mid)))
              .group_by(sent.c.customer_id))
    last = (select(e.customer_id, sql_epoch_us(func.max(e.occurred_at), dialect))
            .where(e.store_id == store, e.type.in_(OPENED), e.occurred_at <= as_of,
                   *mine(e.customer_id))
            .group_by(e.customer_id))
    return counts, last


async def engagement(session: AsyncSession, store_id: str, as_of: datetime, window_days: int,
                     customer_ids: Iterable[str] | None = None) -> dict[str, Engagement]:
    """E-mail engagement of the store's customers (or some) as of T; customers without any
    are absent."""
    counts, last = _engagement_queries(dialect_of(session), customer_ids is not None)
    params: dict[str, Any] = {"store": store_id, "as_of": as_of,
                              "window_start": as_of - timedelta(days=window_days)}
    chunks: list[dict[str, Any]] = [params]
    if customer_ids is not None:
        wanted = list(dict.fromkeys(customer_ids))
        chunks = [{**params, "ids": wanted[i:i + ID_CHUNK]}
                  for i in range(0, len(wanted), ID_CHUNK)]
    found: dict[str, list[Any]] = {}
    for chunk in chunks:
        for cid, sent, opened in await session.execute(counts, chunk):
            found.setdefault(cid, [None, 0, 0])[1:] = [int(sent), int(opened)]
        for cid, at in await session.execute(last, chunk):
            found.setdefault(cid, [None, 0, 0])[0] = None if at is None else int(at)
    return {cid: Engagement(*values) for cid, values in found.items()}


async def _one_part(session: AsyncSession, query: Any, params: dict) -> AsyncIterator[list]:
    yield (await session.execute(query, params)).all()


async def first_column(session: AsyncSession, query: Any) -> list[Any]:
    """The first column of every row (e.g. a million customer ids), via `row_parts`."""
    values: list[Any] = []
    async for rows in row_parts(session, query, PART_ROWS):
        values.extend(row[0] for row in rows)
    return values


async def row_parts(session: AsyncSession, query: Any, size: int,
                    params: dict[str, Any] | None = None) -> AsyncIterator[list]:
    """The query's rows as plain tuples, in parts of `size` (bounded memory).

    On SQLite the rows come straight from the driver's cursor, in the session's
    transaction: for a million-row aggregate SQLAlchemy's row handling costs more than
    SQLite's own work. Bound values, the items of IN lists included, get their type's
    processing (aware times to UTC text, Decimal to float) as SQLAlchemy would give them;
    `params` give values to named `bindparam`s.
    """
    conn = await session.connection()
    if conn.dialect.name != "sqlite":
        result = await conn.stream(query, params)
        async for rows in result.partitions(size):
            yield rows
        return
    compiled = query.compile(dialect=conn.dialect)
    state = compiled.construct_expanded_state(params)
    params = []
    for name in state.positiontup or ():
        # An expanded IN item `x_1_2` takes the type of its list `x_1`.
        bind = compiled.binds.get(name)
        if bind is None:
            bind = compiled.binds.get(name.rsplit("_", 1)[0])
        impl = bind.type.dialect_impl(conn.dialect) if bind is not None else None
        process = impl.bind_processor(conn.dialect) if impl is not None else None
        value = state.parameters[name]
        params.append(process(value) if process else value)
    raw = await conn.get_raw_connection()
    cursor = await raw.driver_connection.execute(state.statement, params)
    try:
        while rows := await cursor.fetchmany(size):
            yield rows
    finally:
        await cursor.close()


async def known_store_ids(session: AsyncSession) -> list[str]:
    """Stores with any record, sorted: the stores a nightly run visits."""
    query = union(
        select(Store.id.label("store_id")),
        select(Customer.store_id.label("store_id")),
        select(Order.store_id.label("store_id")),
    ).subquery()
    result = await session.execute(select(query.c.store_id).order_by(query.c.store_id))
    return list(result.scalars())

