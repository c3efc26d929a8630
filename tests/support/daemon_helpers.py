"""Helpers shared by the daemon tests: envelopes, publishing, polling."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from itertools import count

from sqlalchemy import func, select

from stormd.schema.runtime.inbox import ProcessedEvent

PREFIX = "stormcom"
_ids = count(1)


def envelope(type_: str, data: dict, store: str = "store_1", id_: str | None = None) -> dict:
    return {"id": id_ or f"evt_{next(_ids)}_{time.monotonic_ns()}", "type": type_,
            "storeId": store, "occurredAt": "2026-11-24T10:00:00+06:00", "data": data}


def customer(cid: str, name: str = "Rahim Uddin", **kw) -> dict:
    return envelope("customer.upserted", {"customerId": cid, "name": name}, **kw)


async def publish(js, env: dict | bytes, subject: str | None = None, msg_id: str | None = "auto"):
    if isinstance(env, dict):
        subject = subject or f"{PREFIX}.events.{env['storeId']}.{env['type']}"
        body = json.dumps(env).encode()
        if msg_id == "auto":  # as docs/events.md asks publishers: <storeId>:<id>
            msg_id = f"{env['storeId']}:{env['id']}"
    else:
        body = env
        msg_id = None if msg_id == "auto" else msg_id
    return await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id} if msg_id else None)


async def eventually(check, timeout: float = 15.0, interval: float = 0.05):
    """Poll `check()` (sync or async) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


async def count_rows(sessionmaker, model) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar()




async def processed(sessionmaker) -> int:
    return await count_rows(sessionmaker, ProcessedEvent)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)
