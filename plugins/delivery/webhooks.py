"""Provider webhooks: `/webhooks/<provider>` (GET and POST), served by the daemon's HTTP
server (daemon/http/ops.py), which hands each request here as a `WebhookRequest`.

The provider's plugin verifies the signature over the raw bytes and reads the events
(`stormd_parse_webhook`); a bad signature, a stale timestamp or a replayed request is
refused with 4xx and changes nothing. Verified updates are applied in one transaction
(plugins/delivery/status_updates.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from stormd.plugins import WebhookRejected, WebhookRequest
from stormd.plugins.delivery.status_updates import apply_webhook

log = logging.getLogger("stormd.webhooks")
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class WebhookReply:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


async def answer_webhook(pipeline, name: str, incoming: WebhookRequest) -> WebhookReply:
    """Verify, parse and apply one provider request; the reply to give the provider."""
    await pipeline.ready()
    plugins = pipeline.plugins
    provider = plugins.providers.get(name)
    if provider is None or plugins.hook(provider, "stormd_parse_webhook") is None:
        return WebhookReply(404, f"no webhook for provider {name!r}\n")
    if provider.config is None:
        return WebhookReply(404, f"provider {name!r} is not configured\n")
    if len(incoming.body) > MAX_BODY:
        return WebhookReply(413, "body too large\n")
    now = pipeline.clock.now()
    try:
        result = await plugins.call(provider, "stormd_parse_webhook", request=incoming,
                                    config=provider.config, now=now)
    except WebhookRejected as exc:
        log.warning("webhook %s refused (%s): %s", name, exc.status, exc)
        return WebhookReply(exc.status, f"{exc}\n")
    if result.reply is not None:
        return WebhookReply(200, result.reply)
    async with pipeline.sessionmaker() as session, session.begin():
        changed = await apply_webhook(session, pipeline.settings, name, result, now)
    if changed is None:
        log.warning("webhook %s refused: replay of %s", name, result.delivery_id)
        return WebhookReply(409, "replayed request\n")
    return WebhookReply(200, json.dumps({"ok": True, "updated": changed}), "application/json")
