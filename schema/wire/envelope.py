"""Events out (CONTRACT §4), written to the outbox table with the effects that cause them
and published by the daemon after commit, each with its own id."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.runtime.inbox import OutboundEvent

_STAGED = "stormd.staged_events"  # session.info: the session wrote outbox rows


def note_staged(session: AsyncSession) -> None:
    """Mark the session as having written outbox rows (the relay is woken after its
    commit; otherwise it only polls)."""
    session.info[_STAGED] = True


def staged_events(info: dict[str, Any]) -> bool:
    return bool(info.get(_STAGED))


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def out_subject(prefix: str, store_id: str, type_: str) -> str:
    return f"{prefix}.out.{store_id}.{type_}"


def stage_outbound_event(
    session: AsyncSession,
    *,
    prefix: str,
    store_id: str,
    type_: str,
    data: dict[str, Any],
    now: datetime,
) -> str:
    """Add an outgoing event to the session; returns its envelope id."""
    event_id = new_event_id()
    envelope = {
        "id": event_id, "type": type_, "storeId": store_id,
        "occurredAt": now.isoformat(), "data": data,
    }
    note_staged(session)
    session.add(
        OutboundEvent(
            event_id=event_id, subject=out_subject(prefix, store_id, type_),
            payload=envelope, created_at=now,
        )
    )
    return event_id
