"""Dead letters (docs/events.md): the original bytes republished to
`<prefix>.dlq.<storeId or _>.<type or _>` with the header `Stormd-Error` saying why.

They go to a JetStream stream (`nats.dlq_stream`) and the original is acked only after that
publish is acknowledged, so a dead letter is never lost. `Nats-Msg-Id` is derived from the
original's stream sequence: a redelivered reject is stored once.
"""

from __future__ import annotations

import logging
from typing import Any

from nats.js import JetStreamContext

from stormd.schema.wire.events import dlq_subject

log = logging.getLogger(__name__)
MAX_REASON = 1000


def header_safe(reason: str) -> str:
    """A reason fit for a NATS header value: one line, bounded."""
    text = " ".join(reason.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


class DeadLetters:
    def __init__(self, js: JetStreamContext, prefix: str):
        self.js = js
        self.prefix = prefix

    async def publish(self, msg: Any, reason: str, store_id: str | None, type_: str | None) -> str:
        """Republish `msg` to its dead-letter subject; returns that subject."""
        subject = dlq_subject(self.prefix, store_id, type_)
        headers = {"Stormd-Error": header_safe(reason), "Stormd-Subject": msg.subject}
        try:
            headers["Nats-Msg-Id"] = f"dlq-{msg.metadata.sequence.stream}"
        except Exception:  # a core (non-JetStream) message has no metadata
            pass
        await self.js.publish(subject, msg.data, headers=headers)
        log.info("dead-lettered %s to %s: %s", msg.subject, subject, headers["Stormd-Error"])
        return subject
