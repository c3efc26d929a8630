"""Provider webhooks on `http.listen`: `/webhooks/<provider>` (GET and POST).

The provider's plugin verifies the signature over the raw bytes and reads the events
(`stormd_parse_webhook`); a bad signature, a stale timestamp or a replayed request is
refused with 4xx and changes nothing. Verified updates are applied in one transaction
(plugins/delivery/status_updates.py). The daemon's HTTP server mounts `routes(pipeline)`.
"""

from __future__ import annotations

import logging

from aiohttp import web

from stormd.plugins import WebhookRejected, WebhookRequest
from stormd.plugins.delivery.status_updates import apply_webhook

log = logging.getLogger("stormd.webhooks")
MAX_BODY = 1024 * 1024


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
