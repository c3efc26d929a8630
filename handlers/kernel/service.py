"""What every service function shares: who is calling, the refusals (each with the HTTP
status the API answers it with), transactions that record their writes in the audit log,
and the entity tags that stop two editors overwriting each other.

The service functions (each domain's `service.py`) are the one way in for the command line
and the HTTP API alike: both build a `Call` and neither reads or writes around it.
"""

from __future__ import annotations

import getpass
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.settings import Settings
from stormd.handlers.kernel.context import HandlerContext, JobContext
from stormd.schema.db.write_lock import lock_for_write
from stormd.schema.runtime.access import AuditEntry
from stormd.schema.shop.stores import Store


def _plausible(when: datetime) -> datetime:
    if not 1970 <= when.year <= 2200:
        raise ValueError("must be between the years 1970 and 2200")
    return when


# An instant a request may name: with a time zone, and within the years anything stormd
# keeps can fall in (a far year would overflow on the way to UTC).
Instant = Annotated[AwareDatetime, AfterValidator(_plausible)]


class ServiceError(ValueError):
    """A request the service refuses; the message says what to change."""

    status = 422
    title = "The request cannot be done"


class Invalid(ServiceError):
    status = 422
    title = "Invalid request"


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict with the current state"


class PreconditionFailed(ServiceError):
    status = 412
    title = "The resource changed"


class PreconditionRequired(ServiceError):
    status = 428
    title = "If-Match required"


@dataclass(frozen=True)
class Actor:
    """Who acts: an API key (its id, and its store unless it is an operator key) or a
    person at the command line."""

    name: str
    key_id: str | None = None
    store_id: str | None = None

    @property
    def operator(self) -> bool:
        return self.store_id is None

    @classmethod
    def command_line(cls) -> Actor:
        try:
            user = getpass.getuser()
        except Exception:  # no user name in a bare container
            user = "unknown"
        return cls(name=f"cli:{user}")


@dataclass
class Call:
    """One call into the service layer: the daemon's (or the command's) job context and
    the actor, whose writes the audit log records."""

    job: JobContext
    actor: Actor

    @property
    def settings(self) -> Settings:
        return self.job.settings

    def now(self) -> datetime:
        return self.job.clock.now()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        async with self.job.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """A transaction that holds the database's write lock from its start (SQLite:
        BEGIN IMMEDIATE, so a read-then-write never meets a stale snapshot), committed at
        the end of the block and rolled back if it raises."""
        async with self.job.sessionmaker() as session, session.begin():
            await lock_for_write(session)
            yield session

    def handler_context(self, session: AsyncSession, store_id: str) -> HandlerContext:
        return self.job.handler_context(session, store_id)

    async def audit(self, session: AsyncSession, store_id: str | None, action: str,
                    target: str | None = None, detail: dict[str, Any] | None = None) -> None:
        """Record a write in the caller's transaction (it commits with the write or not
        at all)."""
        session.add(AuditEntry(at=self.now(), store_id=store_id, key_id=self.actor.key_id,
                               actor=self.actor.name[:200], action=action,
                               target=None if target is None else str(target)[:200],
                               detail=detail))


async def require_store(session: AsyncSession, store_id: str) -> Store:
    """The store's row, or NotFound: a store stormd has never heard of has nothing to show."""
    store = await session.get(Store, store_id)
    if store is None:
        raise NotFound(f"there is no store {store_id!r}")
    return store


async def store_exists(session: AsyncSession, store_id: str) -> bool:
    return await session.scalar(select(Store.id).where(Store.id == store_id)) is not None


def etag_of(model: BaseModel) -> str:
    """A strong entity tag of a resource's representation: it changes whenever any field
    the API shows changes."""
    digest = hashlib.sha256(model.model_dump_json(by_alias=True).encode()).hexdigest()
    return f'"{digest[:32]}"'


def check_if_match(current: BaseModel, if_match: str | None, *, required: bool) -> None:
    """Refuse an update made against another version than the stored one (412), or, when
    `required`, made without saying which version it was made against (428). `*` matches
    any version: an explicit "overwrite whatever is there"."""
    if if_match is None or not if_match.strip():
        if required:
            raise PreconditionRequired(
                "send If-Match with the ETag of the version you edited (from GET), or "
                "If-Match: * to overwrite whatever is stored")
        return
    if if_match.strip() == "*":
        return
    tag = etag_of(current)
    offered = [t.strip() for t in if_match.split(",")]
    if tag not in offered:
        raise PreconditionFailed(
            f"the resource changed since you read it (its ETag is now {tag}); GET it again, "
            "re-apply your change and send the new ETag in If-Match")
