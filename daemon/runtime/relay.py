"""The outbox relay: publishes `outbound_events` rows (docs/events.md) after their transaction
commits, then deletes them.

Publishing goes to JetStream (stream `nats.out_stream` over `<prefix>.out.>`), pipelined, with
`Nats-Msg-Id` = `<storeId>:<id>`: a row is deleted only once its publish is acknowledged,
and a row published twice (crash between publish and delete, or two processes) is stored
once by JetStream's de-duplication.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.js import JetStreamContext
from sqlalchemy import delete, select

from stormd.daemon.runtime.batching import describe
from stormd.daemon.runtime.loops import SupervisedLoop
from stormd.schema.db.write_lock import write_session
from stormd.schema.metrics import OUTBOUND_PUBLISHED
from stormd.schema.runtime.inbox import OutboundEvent
from stormd.schema.wire.encoding import to_json_bytes
from stormd.schema.wire.envelope import msg_id

log = logging.getLogger(__name__)


class Relay(SupervisedLoop):
    name = "relay"
    coalesce = 0.05  # let a burst of commits share one pass

    def __init__(self, js: JetStreamContext, sessionmaker: Any, *, batch: int = 500,
                 poll: float = 1.0):
        super().__init__(poll)
        self.js = js
        self.sessionmaker = sessionmaker
        self.batch = batch

    async def stop(self) -> None:
        """Publish what is left, then stop."""
        await super().stop()
        try:
            while await self.flush() == self.batch:
                pass
        except Exception as exc:
            log.warning("relay: final flush failed (%s); rows stay for the next start",
                        describe(exc))

    async def run_pass(self) -> float:
        return 0 if await self.flush() == self.batch else self.poll

    async def flush(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        async with self.sessionmaker() as session:
            rows = (await session.execute(
                select(OutboundEvent.id, OutboundEvent.event_id, OutboundEvent.subject,
                       OutboundEvent.payload).order_by(OutboundEvent.id).limit(self.batch)
            )).all()
        if not rows:
            return 0
        results = await asyncio.gather(
            *(self.js.publish(r.subject, to_json_bytes(r.payload),
                              headers={"Nats-Msg-Id": msg_id(r.payload["storeId"], r.event_id)})
              for r in rows),
            return_exceptions=True,
        )
        done = [r.id for r, res in zip(rows, results) if not isinstance(res, BaseException)]
        if done:
            async with write_session(self.sessionmaker) as session:
                await session.execute(delete(OutboundEvent).where(OutboundEvent.id.in_(done)))
            OUTBOUND_PUBLISHED.inc(len(done))
        if len(done) < len(rows):
            first = next(res for res in results if isinstance(res, BaseException))
            if not done:  # nothing went out: the relay is down until a publish works
                raise first
            log.warning("relay: %d events out not yet published: %s", len(rows) - len(done),
                        describe(first))
        return len(done)
