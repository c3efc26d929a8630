"""`resend`: e-mail through Resend's REST API (POST /emails), with its Idempotency-Key,
and its Svix-signed webhooks (delivered, opened, clicked, bounced, complained, failed).

    [providers.resend]
    api_key = "env:RESEND_API_KEY"
    from_address = "Shop <shop@mail.example.com>"
    webhook_secret = "env:RESEND_WEBHOOK_SECRET"   # whsec_...
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from stormd.plugins import (
    PermanentError,
    RetryableError,
    StatusUpdate,
    WebhookRejected,
    WebhookResult,
    hookimpl,
    verify_svix,
)
from stormd.plugins.builtin.transport import (
    ProviderConfig,
    declare,
    raise_for_status,
    request,
)

NAME = "resend"
EVENT_KINDS = {
    "email.sent": "sent", "email.delivered": "delivered", "email.opened": "open",
    "email.clicked": "click", "email.bounced": "bounce", "email.complained": "complaint",
    "email.failed": "failed",
}


class Config(ProviderConfig):
    api_key: SecretStr
    from_address: str
    base_url: str = "https://api.resend.com"
    webhook_secret: SecretStr = SecretStr("")


stormd_provider, stormd_validate_config = declare(
    NAME, ("email",), Config, "Resend e-mail API", idempotent=True)


@hookimpl
async def stormd_send(message, config: Config, http) -> str:
    payload: dict[str, Any] = {
        "from": config.from_address, "to": [message.to],
        "subject": message.subject or "", "text": message.body,
        "tags": [{"name": "store", "value": _tag(message.store_id)}],
    }
    if message.html:
        payload["html"] = message.html
    if message.headers:
        payload["headers"] = dict(message.headers)
    resp = await request(
        http, "POST", f"{config.base_url}/emails", provider=NAME, json=payload,
        headers={"Authorization": f"Bearer {config.api_key.get_secret_value()}",
                 "Idempotency-Key": message.idempotency_key[:256]},
    )
    error = _error(resp.text)
    if resp.status == 409:
        # concurrent_idempotent_requests: the first is still running, try again later;
        # invalid_idempotent_request: same key, different body, a bug on our side.
        if error.get("name") == "concurrent_idempotent_requests":
            raise RetryableError(f"{NAME}: {error.get('message')}", code="409")
        raise PermanentError(f"{NAME}: {error.get('message', resp.text)}", code="409")
    raise_for_status(resp, NAME, error.get("message", resp.text[:200]))
    try:
        return json.loads(resp.text)["id"]
    except (ValueError, KeyError, TypeError):
        raise RetryableError(f"{NAME}: unexpected response {resp.text[:200]!r}") from None


def _error(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _tag(value: str) -> str:
    """Resend tags allow only ASCII letters, digits, _ and -."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in value)


@hookimpl
def stormd_parse_webhook(request, config: Config, now: datetime) -> WebhookResult:
    if not config.webhook_secret.get_secret_value():
        raise WebhookRejected("providers.resend.webhook_secret is not configured", 404)
    delivery_id = verify_svix(config.webhook_secret.get_secret_value(), request.headers, request.body, now)
    try:
        event = json.loads(request.body)
        kind = EVENT_KINDS.get(event["type"])
        data = event["data"]
        email_id = data["email_id"]
    except (ValueError, KeyError, TypeError):
        raise WebhookRejected("not a Resend event", 400) from None
    if kind is None:
        return WebhookResult(delivery_id=delivery_id)
    occurred = _time(event.get("created_at"))
    url = (data.get("click") or {}).get("link")
    reason = (data.get("bounce") or {}).get("message") or (data.get("failed") or {}).get(
        "reason")
    return WebhookResult(delivery_id=delivery_id, updates=(
        StatusUpdate(external_id=email_id, kind=kind, occurred_at=occurred, url=url,
                     reason=reason),))


def _time(text: str | None) -> datetime | None:
    """Resend's `created_at`; a time without a zone is read as UTC (as Resend means it)."""
    if not text or not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
