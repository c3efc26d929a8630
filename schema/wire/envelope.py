"""Events out: the in-envelope's shape (`id`, `type`, `storeId`, `occurredAt`, `data`),
written to the outbox in the transaction of the effects that cause them and published
by the daemon's relay after commit (docs/events.md).

Every publisher of events out (handlers, the delivery pipeline, webhooks) builds them with
`OutEvent` and stages them with `stage_events`, so the envelope, the subject and the
JetStream de-duplication id are made in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.db.columnar import epoch_us, write_columns
from stormd.schema.runtime.inbox import OutboundEvent
from stormd.schema.wire.encoding import to_json

OUTBOX = OutboundEvent.__table__


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def out_subject(prefix: str, store_id: str, type_: str) -> str:
    return f"{prefix}.out.{store_id}.{type_}"


def msg_id(store_id: str, event_id: str) -> str:
    """JetStream's `Nats-Msg-Id` for an event of a store: ids are unique within a store."""
    return f"{store_id}:{event_id}"


@dataclass(frozen=True, slots=True)
class OutEvent:
    store_id: str
    type: str
    data: dict[str, Any]
    occurred_at: datetime
    id: str = field(default_factory=new_event_id)

    def subject(self, prefix: str) -> str:
        return out_subject(prefix, self.store_id, self.type)

    def envelope(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "storeId": self.store_id,
                "occurredAt": self.occurred_at.isoformat(), "data": self.data}


def out_events(store_id: str, type_: str, occurred_at: datetime,
               data: Iterable[dict[str, Any]]) -> list[OutEvent]:
    """Many events of one type, store and instant; their ids share a random head and
    count up (cheaper than a UUID each when a segment moves thousands of customers)."""
    head = new_event_id()[:20]
    return [OutEvent(store_id, type_, d, occurred_at, f"{head}{i:016x}")
            for i, d in zip(count(), data)]


async def stage_events(session: AsyncSession, prefix: str, events: Sequence[OutEvent]) -> int:
    """Add the events to the outbox in the caller's transaction (one multi-row write);
    returns how many. The caller tells the runtime (its context's effects), which wakes
    the relay after commit."""
    if not events:
        return 0
    payloads, subjects = [], []
    common: dict[tuple[str, str, datetime], str] = {}
    for e in events:
        key = (e.type, e.store_id, e.occurred_at)
        head = common.get(key)
        if head is None:  # the envelope's fields shared by a run of events, encoded once
            head = common[key] = to_json({"type": e.type, "storeId": e.store_id,
                                          "occurredAt": e.occurred_at.isoformat()})[1:-1]
        payloads.append(f'{{"id":{to_json(e.id)},{head},"data":{to_json(e.data)}}}')
        subjects.append(out_subject(prefix, e.store_id, e.type))
    created = {t: epoch_us(t) for t in {e.occurred_at for e in events}}
    await write_columns(session, OUTBOX, {
        "event_id": [e.id for e in events], "subject": subjects, "payload": payloads,
        "created_at": [created[e.occurred_at] for e in events]}, ["event_id"], update=False)
    return len(events)

