"""API keys: created by the operator at the command line (`stormd keys`), shown once, kept
as a SHA-256 hash; presented as `Authorization: Bearer <key>` to the HTTP API.

A key reads `stormd_<id>_<secret>`: the prefix makes a leaked key easy to recognise (and
to scan for), the id finds its row, and the 32 random bytes of the secret are compared
with the stored hash in constant time. A store key acts on its store alone; an operator
key on every store.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.service import Actor, Call, Conflict, Invalid, NotFound
from stormd.schema.db.upsert import upsert_rows
from stormd.schema.db.write_lock import lock_for_write
from stormd.schema.runtime.access import ApiKey
from stormd.schema.shop.stores import Store

log = logging.getLogger(__name__)
PREFIX = "stormd_"
TOKEN = re.compile(r"^stormd_(k[0-9a-f]{11})_([A-Za-z0-9_-]{43})$")
STORE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
LAST_USED_EVERY = timedelta(minutes=1)  # how stale `lastUsedAt` may be (a write per minute, not per request)


class KeyInfo(BaseModel):
    """A key as listed: never its secret."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: str
    store_id: str | None = Field(description="The key's store; null for an operator key.")
    name: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class NewKey(KeyInfo):
    key: str = Field(description="The key itself: shown this once, never stored.")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(id=row.id, store_id=row.store_id, name=row.name, created_at=row.created_at,
                   revoked_at=row.revoked_at, last_used_at=row.last_used_at)


async def create_key(call: Call, store_id: str | None, name: str | None = None) -> NewKey:
    """A new key for `store_id` (None: an operator key). The store is registered if stormd
    has not heard of it yet, so its API answers before its first event arrives."""
    if store_id is not None and not STORE_ID.match(store_id):
        raise Invalid(f"store {store_id!r}: 1-64 letters, digits, '_' or '-'")
    name = (name or ("operator" if store_id is None else store_id)).strip()
    if not name or len(name) > 100:
        raise Invalid("name: 1 to 100 characters")
    key_id = "k" + secrets.token_hex(6)[:11]
    secret = secrets.token_urlsafe(32)
    now = call.now()
    async with call.writing() as session:
        if store_id is not None:
            await upsert_rows(session, Store.__table__, [{"id": store_id, "created_at": now}],
                              ["id"], update=False)
        row = ApiKey(id=key_id, store_id=store_id, name=name, secret_hash=_hash(secret),
                     created_at=now)
        session.add(row)
        await call.audit(session, store_id, "keys.create", key_id, {"name": name})
    return NewKey(**_info(row).model_dump(), key=f"{PREFIX}{key_id}_{secret}")


async def list_keys(call: Call) -> list[KeyInfo]:
    async with call.reading() as session:
        rows = (await session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))).all()
    return [_info(r) for r in rows]


async def revoke_key(call: Call, key_id: str) -> KeyInfo:
    """Revoke at once: the next request with the key gets 401."""
    async with call.writing() as session:
        row = await session.get(ApiKey, key_id)
        if row is None:
            raise NotFound(f"there is no key {key_id!r} (stormd keys list shows them)")
        if row.revoked_at is not None:
            raise Conflict(f"key {key_id} was already revoked at {row.revoked_at.isoformat()}")
        row.revoked_at = call.now()
        await call.audit(session, row.store_id, "keys.revoke", key_id)
    return _info(row)


async def authenticate(job: JobContext, token: str, now: datetime) -> Actor | None:
    """The actor a bearer token stands for, or None (malformed, unknown, wrong secret or
    revoked: the caller cannot tell which)."""
    match = TOKEN.match(token)
    if match is None:
        return None
    key_id, secret = match.groups()
    async with job.sessionmaker() as session:
        row = await session.get(ApiKey, key_id)
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        return None
    if row.revoked_at is not None:
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
        try:
            async with job.sessionmaker() as session, session.begin():
                await lock_for_write(session)
                await session.execute(update(ApiKey).where(ApiKey.id == key_id)
                                      .values(last_used_at=now))
        except DBAPIError as exc:  # best effort: a busy database does not refuse the request
            log.debug("last use of key %s not recorded: %s", key_id, exc)
    return Actor(name=f"key:{row.id} ({row.name})", key_id=row.id, store_id=row.store_id)
