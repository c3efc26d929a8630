"""The outbox relay: publishes `outbound_events` rows (CONTRACT §4) after their transaction
commits, then deletes them.

Publishing goes to JetStream (stream `nats.out_stream` over `<prefix>.out.>`), pipelined, with
`Nats-Msg-Id` = the event's own id: a row is deleted only once its publish is acknowledged,
and a row published twice (crash between publish and delete, or two processes) is stored
once by JetStream's de-duplication.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from nats.js import JetStreamContext
from sqlalchemy import delete, select

from stormd.daemon.batching import describe
from stormd.daemon.metrics import OUTBOUND_PUBLISHED
from stormd.schema.inbox import OutboundEvent

log = logging.getLogger(__name__)


class Relay:
    def __init__(self, js: JetStreamContext, sessionmaker: Any, *, batch: int = 500,
                 poll: float = 1.0):
        self.js = js
        self.sessionmaker = sessionmaker
        self.batch = batch
        self.poll = poll
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relay")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Publish what is left, then stop."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            while await self.flush() == self.batch:
                pass
        except Exception as exc:
            log.warning("relay: final flush failed (%s); rows stay for the next start",
                        describe(exc))

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if await self.flush() == self.batch:
                    continue
            except Exception as exc:
                log.warning("relay: %s", describe(exc))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll)
                await asyncio.sleep(0.05)  # let a burst of commits share one pass
            except TimeoutError:
                pass

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
            *(self.js.publish(r.subject, json.dumps(r.payload, ensure_ascii=False).encode(),
                              headers={"Nats-Msg-Id": r.event_id}) for r in rows),
            return_exceptions=True,
        )
        done = [r.id for r, res in zip(rows, results) if not isinstance(res, BaseException)]
        if done:
            async with self.sessionmaker() as session, session.begin():
                await session.execute(delete(OutboundEvent).where(OutboundEvent.id.in_(done)))
            OUTBOUND_PUBLISHED.inc(len(done))
        if len(done) < len(rows):
            first = next(res for res in results if isinstance(res, BaseException))
            log.warning("relay: %d events out not yet published: %s", len(rows) - len(done),
                        describe(first))
        return len(done)
