"""`outbox`: the default provider. It records and never sends.

The delivery log row (`stormd messages`) is the record: its status becomes `sent` with
this provider's id (`outbox-<message id>`) and its cost the list price of
`campaigns.message_cost` (SMS per segment), so a fresh install shows exactly what would
have gone out and what it would have cost.

What happens next to a message (delivered, read, opened, clicked, bounced) is for whoever
stands in for the real provider to say: a staging harness, a load test, `stormd demo`. It
posts receipts to `/webhooks/outbox`, signed like Meta's webhooks with the configured
secret, and they take the same path as a real provider's (delivery log, `message.status`
and `email.*` events, KPIs):

    [providers.outbox]
    webhook_secret = "env:OUTBOX_WEBHOOK_SECRET"   # "" (default): receipts refused

    POST /webhooks/outbox
    X-Stormd-Signature: sha256=<hex HMAC-SHA256(webhook_secret, body)>
    {"id": "<unique per request>",
     "receipts": [{"messageId": "outbox-42", "status": "delivered",
                   "at": "2026-11-30T10:00:00Z", "url": null, "reason": null}]}

`status` is one of sent, delivered, read, open, click, bounce, complaint, failed.
"""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import SecretStr

from stormd.plugins import (
    CHANNELS,
    UPDATE_KINDS,
    StatusUpdate,
    WebhookRejected,
    WebhookResult,
    body_digest,
    hookimpl,
    verify_hub_signature,
)
from stormd.plugins.builtin.transport import ProviderConfig, declare

NAME = "outbox"
SIGNATURE_HEADER = "X-Stormd-Signature"


class Config(ProviderConfig):
    webhook_secret: SecretStr = SecretStr("")


stormd_provider, stormd_validate_config = declare(
    NAME, CHANNELS, Config,
    "records every message in the delivery log; sends nothing", idempotent=True,
    list_price=True)


@hookimpl
def stormd_send(message) -> str:
    return f"outbox-{message.message_id}"


@hookimpl
def stormd_parse_webhook(request, config: Config) -> WebhookResult:
    secret = config.webhook_secret.get_secret_value()
    if not secret:
        raise WebhookRejected("providers.outbox.webhook_secret is not configured", 404)
    verify_hub_signature(secret, request.headers, request.body, header=SIGNATURE_HEADER)
    try:
        payload = json.loads(request.body)
        receipts = [_receipt(r) for r in payload["receipts"]]
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise WebhookRejected(f"not an outbox receipt: {str(exc)[:300]}", 400) from None
    return WebhookResult(delivery_id=str(payload.get("id") or body_digest(request.body)),
                         updates=tuple(receipts))


def _receipt(r: dict) -> StatusUpdate:
    status = r["status"]
    if status not in UPDATE_KINDS or not str(r["messageId"]).startswith(f"{NAME}-"):
        raise ValueError(f"receipt {r!r} needs an outbox messageId and a status among "
                         f"{', '.join(UPDATE_KINDS)}")
    at = r.get("at")
    when = datetime.fromisoformat(at) if at else None
    if when is not None and when.tzinfo is None:
        raise ValueError("a receipt's at needs a time zone (2026-11-30T10:00:00Z)")
    return StatusUpdate(external_id=str(r["messageId"]), kind=status, occurred_at=when,
                        url=r.get("url"), reason=r.get("reason"))
