"""The routes for operators and providers, outside the API and its keys: `/healthz`
(alive), `/readyz` (NATS connected and the database answering), `/metrics` (Prometheus
text) and the provider webhooks `/webhooks/<provider>`, whose signatures are checked over
the raw bytes of the request (plugins/delivery/webhooks.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stormd.plugins import WebhookRequest
from stormd.plugins.delivery.webhooks import answer_webhook
from stormd.schema.metrics import exposition

log = logging.getLogger(__name__)
Readiness = Callable[[], Awaitable[dict[str, bool]]]


def metrics_routes() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/metrics")
    async def metrics() -> Response:
        body, content_type = exposition()
        return Response(body, headers={"Content-Type": content_type})

    return router


def health_routes(readiness: Readiness) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            checks = await asyncio.wait_for(readiness(), 5)
        except Exception as exc:
            checks = {"ready": False, "error": type(exc).__name__}
            log.warning("readiness check failed: %s", exc)
        ok = bool(checks.get("ready"))
        return JSONResponse({**checks, "ready": ok}, status_code=200 if ok else 503)

    return router


def webhook_routes(pipeline) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.api_route("/webhooks/{provider}", methods=["GET", "POST"])
    async def webhook(provider: str, request: Request) -> Response:
        # The headers stay a case-insensitive mapping: plugins look them up by any case.
        incoming = WebhookRequest(method=request.method, path=request.url.path,
                                  headers=request.headers, query=dict(request.query_params),
                                  body=await request.body())
        reply = await answer_webhook(pipeline, provider, incoming)
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)

    return router
