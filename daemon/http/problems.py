"""Errors as `application/problem+json` (RFC 9457): `type`, `title`, `status`, and a
`detail` that says what to change; validation errors list each bad field in `errors`.

Every refusal of the service layer carries its status (handlers/kernel/service.py); the
domain's own refusals (a campaign, segment, template or criteria that cannot be) are 422,
the ROI guard 409; bad input is never a 500. Request bodies are capped (1 MiB) and their
JSON nesting bounded before anything parses them.
"""

from __future__ import annotations

import json
import logging
import math
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from stormd.handlers.campaigns.campaigns import CampaignError
from stormd.handlers.kernel.service import ServiceError
from stormd.handlers.outreach.costs import SendRefused
from stormd.handlers.outreach.templates import TemplateError
from stormd.handlers.scoring.criteria import CriteriaError
from stormd.handlers.scoring.segments import SegmentError

log = logging.getLogger("stormd.http")
PROBLEM = "application/problem+json"
MAX_BODY = 1024 * 1024
MAX_DEPTH = 32


class FieldError(BaseModel):
    field: str = Field(description="Where: body.name, query.limit, header.If-Match, ...")
    message: str


class Problem(BaseModel):
    """An error (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = Field(description="What went wrong and what to do about it.")
    instance: str | None = None
    errors: list[FieldError] | None = None


def problem(status: int, detail: str, *, title: str | None = None, instance: str | None = None,
            errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank",
                            "title": title or HTTPStatus(status).phrase,
                            "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def problem_for(exc: Exception, path: str | None = None) -> JSONResponse | None:
    """The problem reply for a refusal of the service or the domain; None for anything
    else (a bug: the caller logs it and answers 500)."""
    if isinstance(exc, ServiceError):
        return problem(exc.status, str(exc), title=exc.title, instance=path)
    if isinstance(exc, SendRefused):
        return problem(409, f"{exc}; change the campaign, or schedule with force=true to send "
                            "anyway", title="Refused by the ROI and budget guard", instance=path)
    if isinstance(exc, CampaignError | SegmentError | CriteriaError | TemplateError):
        return problem(422, str(exc), title="Invalid request", instance=path)
    return None


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        return ".".join(parts) if len(parts) > 1 else parts[0]
    return ".".join(parts) or "request"


def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return problem(400, "the request body is not valid JSON "
                                f"({err.get('ctx', {}).get('error', 'decode error')})",
                           instance=request.url.path)
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "missing":
            message = "required"
        errors.append({"field": _where(err.get("loc", ())), "message": message})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more"
    return problem(422, detail or "invalid request", title="Invalid request",
                   instance=request.url.path, errors=errors)


def install(app: FastAPI) -> None:
    """Answer every error of `app` as problem+json."""

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is nothing at {request.url.path}; the API lives under /api/v1 (see /docs)"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        return problem(exc.status_code, detail, instance=request.url.path,
                       headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def refusal_or_bug(request: Request, exc: Exception) -> JSONResponse:
        reply = problem_for(exc, request.url.path)
        if reply is not None:
            return reply
        log.exception("%s %s failed", request.method, request.url.path)
        return problem(500, "stormd failed to answer this request; the daemon's log has the "
                            "reason", instance=request.url.path)

    for error in (ServiceError, SendRefused, CampaignError, SegmentError, CriteriaError,
                  TemplateError):
        app.add_exception_handler(error, refusal_or_bug)


def _nesting_ok(body: bytes, limit: int) -> bool:
    """JSON nested at most `limit` deep (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return True
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


# What JSON can say but no database keeps: a NUL character, a lone surrogate, NaN or an
# infinity, a number past 300 digits. Looked for in the raw bytes, parsed only if present.
_SUSPECT = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|NaN|Infinity|\d{300}|[eE][+-]?\d{3}")


def _unstorable(body: bytes) -> str | None:
    """Why the JSON body cannot be stored as sent, or None."""
    if not _SUSPECT.search(body):
        return None

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"the number {text[:20]} is out of range")
        return value

    def integer(text: str) -> int:
        if len(text.lstrip("-")) > 300:
            raise ValueError("an integer of more than 300 digits")
        return int(text)

    def constant(text: str) -> None:
        raise ValueError(f"{text} is not a JSON number")

    def strings(node: object) -> None:
        if isinstance(node, str):
            if "\x00" in node:
                raise ValueError("a text holds a NUL character")
            node.encode("utf-8")  # a lone surrogate fails here
        elif isinstance(node, dict):
            for key, value in node.items():
                strings(key)
                strings(value)
        elif isinstance(node, list):
            for value in node:
                strings(value)

    try:
        strings(json.loads(body, parse_float=number, parse_int=integer,
                           parse_constant=constant))
    except UnicodeError:
        return "a text holds an unpaired surrogate (\\ud800-\\udfff)"
    except (ValueError, RecursionError) as exc:
        return str(exc)
    return None


class BodyLimits:
    """ASGI middleware: a request body over `max_body` bytes is refused with 413 (by its
    Content-Length, or while it streams); an API request's JSON nested deeper than
    `max_depth`, or holding what no database keeps (NUL, lone surrogates, NaN, infinities,
    300-digit numbers), and a NUL in any path or query, with 400, before a handler runs."""

    def __init__(self, app: Any, max_body: int = MAX_BODY, max_depth: int = MAX_DEPTH):
        self.app, self.max_body, self.max_depth = app, max_body, max_depth

    async def _refuse(self, send: Any, status: int, detail: str) -> None:
        reply = problem(status, detail)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", PROBLEM.encode()),
                                (b"content-length", str(len(reply.body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": reply.body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            await self._refuse(send, 400, "the path or query holds a NUL character")
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = (f"the request body is over {self.max_body // 1024} KiB; send less "
                   "(split the change, or page through it)")
        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            if length is not None and int(length) > self.max_body:
                await self._refuse(send, 413, too_big)
                return
        except ValueError:
            await self._refuse(send, 400, "Content-Length is not a number")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._refuse(send, 413, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if scope["path"].startswith("/api/"):
            if not _nesting_ok(body, self.max_depth):
                await self._refuse(send, 400, f"the request body's JSON is nested more than "
                                              f"{self.max_depth} levels deep")
                return
            why = _unstorable(body)
            if why is not None:
                await self._refuse(send, 400, f"the request body cannot be stored as sent: "
                                              f"{why}")
                return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
