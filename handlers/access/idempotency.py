"""`Idempotency-Key` on the requests that send or spend (campaign schedule and send,
discount redemption): the first request with a key runs and its reply is kept; the same
key with the same request replays that reply without acting again; the same key with
another request is refused (422), and one still running answers 409. Replies are kept a
day, per store."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.service import Conflict, Invalid
from stormd.schema.db.write_lock import lock_for_write
from stormd.schema.runtime.access import IdempotentRequest

KEPT_FOR = timedelta(days=1)
MAX_KEY = 200


@dataclass(frozen=True)
class Replay:
    status: int
    reply: str


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"%s %s\n" % (method.encode(), path.encode()) + body).hexdigest()


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY or not key.isprintable():
        raise Invalid(f"Idempotency-Key: 1 to {MAX_KEY} printable characters")
    return key


async def claim(job: JobContext, store_id: str, key: str, print_: str, now: datetime
                ) -> Replay | None:
    """Claim `key` for this request (None: go ahead), or the reply to replay."""
    check_key(key)
    async with job.sessionmaker() as session, session.begin():
        await lock_for_write(session)
        await session.execute(delete(IdempotentRequest).where(
            IdempotentRequest.created_at < now - KEPT_FOR))
        found = await session.scalar(select(IdempotentRequest).where(
            IdempotentRequest.store_id == store_id, IdempotentRequest.key == key))
        if found is None:
            session.add(IdempotentRequest(store_id=store_id, key=key, fingerprint=print_,
                                          status=0, created_at=now))
            try:
                await session.flush()
            except IntegrityError:  # another request claimed it between our read and insert
                raise Conflict(f"a request with Idempotency-Key {key!r} is still running; "
                               "retry in a moment to get its reply") from None
            return None
    if found.fingerprint != print_:
        raise Invalid(f"Idempotency-Key {key!r} was used for a different request; use a new "
                      "key for a new request")
    if found.status == 0:
        raise Conflict(f"a request with Idempotency-Key {key!r} is still running; retry in a "
                       "moment to get its reply")
    return Replay(found.status, found.reply or "")


async def settle(job: JobContext, store_id: str, key: str, status: int, reply: str) -> None:
    """Keep the reply of a finished request; forget the key after a server error, so that
    a retry runs again."""
    async with job.sessionmaker() as session, session.begin():
        await lock_for_write(session)
        where = (IdempotentRequest.store_id == store_id, IdempotentRequest.key == key)
        if status >= 500:
            await session.execute(delete(IdempotentRequest).where(*where))
        else:
            await session.execute(update(IdempotentRequest).where(*where)
                                  .values(status=status, reply=reply))
