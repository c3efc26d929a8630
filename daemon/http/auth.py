"""Who is calling: `Authorization: Bearer <key>` on every `/api/v1` request (no key, a
wrong or a revoked one: 401), and which stores the key may see. A store key used on
another store's path gets the very 404 a store that does not exist gets, so a key cannot
even learn which other stores exist; an operator key acts on every store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stormd.handlers.access.keys import authenticate
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.service import Actor, Call, NotFound, store_exists

bearer = HTTPBearer(auto_error=False, description="An API key: `stormd keys create --store S`.")
STORE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class Unauthenticated(Exception):
    """No key, or one that is wrong or revoked."""


def job_of(request: Request) -> JobContext:
    return request.app.state.job


async def actor(request: Request,
                credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                ) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send your API key as `Authorization: Bearer <key>` "
                              "(`stormd keys create --store S` makes one)")
    job = job_of(request)
    found = await authenticate(job, credentials.credentials, job.clock.now())
    if found is None:
        raise Unauthenticated("this API key is not valid (wrong, or revoked); ask the operator "
                              "for a key (`stormd keys create --store S`)")
    return found


Who = Annotated[Actor, Depends(actor)]


def no_store(store_id: str) -> NotFound:
    return NotFound(f"there is no store {store_id!r}")


@dataclass
class StoreCall:
    """A call acting on one store the key may see."""

    store_id: str
    call: Call


async def store_call(request: Request, who: Who,
                     store_id: Annotated[str, Path(alias="storeId", pattern=STORE_ID,
                                                   description="The store's id.")]
                     ) -> StoreCall:
    if who.store_id is not None and who.store_id != store_id:
        raise no_store(store_id)
    job = job_of(request)
    async with job.sessionmaker() as session:
        if not await store_exists(session, store_id):
            raise no_store(store_id)
    return StoreCall(store_id, Call(job, who))


InStore = Annotated[StoreCall, Depends(store_call)]
