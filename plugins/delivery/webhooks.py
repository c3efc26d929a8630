"""Provider webhooks on `http.listen`: `/webhooks/<provider>` (GET and POST).

The provider's plugin verifies the signature over the raw bytes and reads the events
(`stormd_parse_webhook`); a bad signature, a stale timestamp or a replayed request is
refused with 4xx and changes nothing. What the plugin read is then held to what the
delivery log can store the same way on both databases (`checked`): a time with a zone
within reason, no NUL, a click URL that fits its column, reasons and codes cut to their
columns; anything else is a 400 with the reason, never a 500. Verified updates are
applied in one transaction (plugins/delivery/status_updates.py). The daemon's HTTP server
mounts `routes(pipeline)`.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta

from aiohttp import web

from stormd.plugins import WebhookRejected, WebhookRequest, WebhookResult
from stormd.plugins.delivery.status_updates import apply_webhook

log = logging.getLogger("stormd.webhooks")
MAX_BODY = 1024 * 1024
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # no provider reports a message older
AHEAD = timedelta(days=1)  # a provider's clock may run this far ahead of ours, no more
MAX_URL, MAX_REASON, MAX_CODE, MAX_ID = 1000, 500, 64, 200  # their columns


def checked(result: WebhookResult, now: datetime) -> WebhookResult:
    """The plugin's updates, fit to store; WebhookRejected (400) naming the first that is
    not (a reason in fixed words, never the value)."""
    if result.delivery_id is not None and (not isinstance(result.delivery_id, str)
                                           or "\x00" in result.delivery_id):
        raise WebhookRejected("the request id is not text without NUL", 400)
    updates = []
    for i, u in enumerate(result.updates):
        where = f"update {i}"
        for name in ("external_id", "kind", "url", "reason", "error_code"):
            value = getattr(u, name)
            if value is not None and (not isinstance(value, str) or "\x00" in value):
                raise WebhookRejected(f"{where}: {name} is not text without NUL", 400)
        at = u.occurred_at
        if at is not None:
            if not isinstance(at, datetime) or at.tzinfo is None:
                raise WebhookRejected(f"{where}: its time has no time zone", 400)
            if not EARLIEST <= at <= now + AHEAD:
                raise WebhookRejected(f"{where}: its time is out of range", 400)
        if len(u.external_id) > MAX_ID:
            raise WebhookRejected(f"{where}: message id longer than {MAX_ID} characters", 400)
        if u.url is not None and len(u.url) > MAX_URL:
            raise WebhookRejected(f"{where}: url longer than {MAX_URL} characters", 400)
        updates.append(dataclasses.replace(
            u, reason=u.reason[:MAX_REASON] if u.reason else u.reason,
            error_code=u.error_code[:MAX_CODE] if u.error_code else u.error_code))
    return dataclasses.replace(result, updates=tuple(updates))


def routes(pipeline) -> list:
    """aiohttp route definitions for every provider webhook."""

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["provider"]
        await pipeline.ready()
        plugins = pipeline.plugins
        provider = plugins.providers.get(name)
        if provider is None or plugins.hook(provider, "stormd_parse_webhook") is None:
            return web.Response(status=404, text=f"no webhook for provider {name!r}\n")
        if provider.config is None:
            return web.Response(status=404, text=f"provider {name!r} is not configured\n")
        if (request.content_length or 0) > MAX_BODY:
            return web.Response(status=413, text="body too large\n")
        incoming = WebhookRequest(
            method=request.method, path=request.path, headers=dict(request.headers),
            query=dict(request.query), body=await request.read(),
        )
        now = pipeline.clock.now()
        try:
            result = await plugins.call(provider, "stormd_parse_webhook", request=incoming,
                                        config=provider.config, now=now)
            result = checked(result, now)
        except WebhookRejected as exc:
            log.warning("webhook %s refused (%s): %s", name, exc.status, exc)
            return web.Response(status=exc.status, text=f"{exc}\n")
        if result.reply is not None:
            return web.Response(text=result.reply)
        async with pipeline.sessionmaker() as session, session.begin():
            changed = await apply_webhook(session, pipeline.settings, name, result, now)
        if changed is None:
            log.warning("webhook %s refused: replay of %s", name, result.delivery_id)
            return web.Response(status=409, text="replayed request\n")
        return web.json_response({"ok": True, "updated": changed})

    return [web.get("/webhooks/{provider}", handle), web.post("/webhooks/{provider}", handle)]
