"""The conventions every resource follows, in one place so they cannot drift:

- lists: `limit` (1-200, default 50) and `cursor` (the previous page's `nextCursor`),
  `sort` (a field, `-field` descending) and exact-match filters named after the fields;
- updates: the resource's `ETag` on every read and write; `If-Match` required on a change
  of something that exists (428 without it, 412 when it no longer matches; `*` overwrites);
- `Idempotency-Key` on requests that send or spend: the same key and body replay the first
  reply (header `Idempotent-Replayed: true`), another body with the key is 422.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from stormd.daemon.http.auth import StoreCall
from stormd.daemon.http.problems import problem_for
from stormd.handlers.access import idempotency
from stormd.handlers.kernel.paging import DEFAULT_LIMIT, MAX_LIMIT, PageRequest
from stormd.handlers.kernel.service import Invalid, etag_of

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items a page (at most {MAX_LIMIT}).")]
Cursor = Annotated[str | None, Query(max_length=1000,
                                     description="`nextCursor` of the previous page.")]
IfMatch = Annotated[str | None, Header(
    alias="If-Match", max_length=1000,
    description="The ETag of the version you edited (from a GET), or * to overwrite.")]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=idempotency.MAX_KEY,
    description="A unique key of this request: a retry with the same key and body replays "
                "the first reply instead of acting twice.")]


def page(limit: int, cursor: str | None, sort: str | None) -> PageRequest:
    return PageRequest(limit=limit or DEFAULT_LIMIT, cursor=cursor, sort=sort or "")


def tagged(model: BaseModel, response: Response) -> BaseModel:
    """Return `model`, its ETag on the response."""
    response.headers["ETag"] = etag_of(model)
    return model


def _reply(model: Any, status: int) -> JSONResponse:
    body = jsonable_encoder(model, by_alias=True)
    headers = {"ETag": etag_of(model)} if isinstance(model, BaseModel) else None
    return JSONResponse(body, status_code=status, headers=headers)


async def idempotent(request: Request, scope: StoreCall, key: str | None,
                     act: Callable[[], Awaitable[Any]], status: int = 200) -> Response:
    """Run `act()` once per `Idempotency-Key` (or always, without one)."""
    if key is None:
        return _reply(await act(), status)
    job = scope.call.job
    body = await request.body()
    print_ = idempotency.fingerprint(request.method, request.url.path, body)
    replay = await idempotency.claim(job, scope.store_id, key, print_, job.clock.now())
    if replay is not None:
        stored = json.loads(replay.reply)
        media = stored.get("mediaType", "application/json")
        return Response(stored["body"], status_code=replay.status, media_type=media,
                        headers={**stored.get("headers", {}), "Idempotent-Replayed": "true"})
    try:
        reply: Response = _reply(await act(), status)
    except Exception as exc:
        refused = problem_for(exc, request.url.path)
        if refused is None:
            await idempotency.settle(job, scope.store_id, key, 500, "")
            raise
        reply = refused
    headers = {k: v for k, v in reply.headers.items() if k.lower() == "etag"}
    await idempotency.settle(job, scope.store_id, key, reply.status_code, json.dumps({
        "body": reply.body.decode(), "mediaType": reply.media_type, "headers": headers}))
    return reply


def _query_names(dependant: Any) -> set[str]:
    """The query parameters an operation takes, its dependencies' included."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query(request: Request) -> None:
    """Refuse query parameters the operation does not take (a misspelt filter would
    otherwise be ignored, and the list look filtered when it is not)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    allowed = _query_names(dependant)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "no query parameters"
        raise Invalid(f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
                      f"this operation takes {takes}")
