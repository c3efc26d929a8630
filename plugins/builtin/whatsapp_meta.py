"""`meta`: WhatsApp template messages through Meta's Cloud API
(POST /<version>/<phone-number-id>/messages), and its signed status webhooks.

Marketing outside a 24-hour conversation must use a template Meta approved; stormd keeps
each store's templates (WhatsAppTemplate) with their status and refuses any template that
is not APPROVED before calling Meta. Template parameters come from the message's
`data["params"]` (a list of strings, in order). A template approved with an IMAGE header
gets the message's `data["header_image"]` (a cart reminder's first product picture), else
the template's own `header_content` link.

    [providers.meta]
    access_token = "env:WHATSAPP_TOKEN"
    phone_number_id = "1234567890"
    app_secret = "env:WHATSAPP_APP_SECRET"     # verifies X-Hub-Signature-256
    verify_token = "env:WHATSAPP_VERIFY_TOKEN" # the subscription handshake
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from stormd.plugins import (
    PermanentError,
    RetryableError,
    StatusUpdate,
    WebhookRejected,
    WebhookResult,
    body_digest,
    hookimpl,
    verify_hub_signature,
)
from stormd.plugins.builtin.transport import (
    ProviderConfig,
    declare,
    raise_for_status,
    request,
)

NAME = "meta"
# Cloud API error codes worth retrying: throttling and temporary unavailability.
RETRYABLE_CODES = {4, 80007, 130429, 131000, 131016, 131048, 131056, 133004}
AUTH_CODES = {0, 190, 10, 200}


class Config(ProviderConfig):
    access_token: SecretStr
    phone_number_id: str
    app_secret: SecretStr = SecretStr("")
    verify_token: SecretStr = SecretStr("")
    api_version: str = "v21.0"
    base_url: str = "https://graph.facebook.com"
    marketing_rate: Decimal = Decimal("8.90")  # BDT per delivered marketing template
    utility_rate: Decimal = Decimal("1.40")


stormd_provider, stormd_validate_config = declare(
    NAME, ("whatsapp",), Config, "WhatsApp Cloud API (Meta) template messages")


@hookimpl
def stormd_estimate_cost(message, config: Config) -> Decimal:
    template = message.data.get("whatsapp_template") or {}
    if template.get("category") == "UTILITY" or not message.marketing:
        return config.utility_rate
    return config.marketing_rate


def template_payload(message) -> dict[str, Any]:
    """The Cloud API body for a template message; PermanentError unless APPROVED."""
    template = message.data.get("whatsapp_template")
    if not template:
        raise PermanentError(f"{NAME}: no WhatsApp template {message.template!r} for store "
                             f"{message.store_id}", code="template")
    if template.get("status") != "APPROVED":
        raise PermanentError(f"{NAME}: template {template['name']!r} is "
                             f"{template.get('status')}, not APPROVED", code="template")
    params = [str(p) for p in message.data.get("params", [])]
    body: dict[str, Any] = {"name": template["name"],
                            "language": {"code": template.get("language") or message.locale}}
    components = []
    image = message.data.get("header_image") or template.get("header_content")
    if template.get("header_type") == "IMAGE" and image:
        components.append({"type": "header", "parameters": [
            {"type": "image", "image": {"link": image}}]})
    if params:
        components.append({"type": "body", "parameters": [
            {"type": "text", "text": p} for p in params]})
    if components:
        body["components"] = components
    return {"messaging_product": "whatsapp", "recipient_type": "individual",
            "to": message.to.lstrip("+"), "type": "template", "template": body}


@hookimpl
async def stormd_send(message, config: Config, http) -> str:
    payload = template_payload(message)
    url = f"{config.base_url}/{config.api_version}/{config.phone_number_id}/messages"
    resp = await request(http, "POST", url, provider=NAME, json=payload,
                         headers={"Authorization": f"Bearer {config.access_token.get_secret_value()}"})
    if resp.status >= 400:
        _raise_graph_error(resp)
    try:
        return json.loads(resp.text)["messages"][0]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RetryableError(f"{NAME}: unexpected response {resp.text[:200]!r}") from None


def _raise_graph_error(resp) -> None:
    try:
        error = json.loads(resp.text)["error"]
        code = int(error.get("code", -1))
    except (ValueError, KeyError, TypeError):
        raise_for_status(resp, NAME, resp.text[:200])
        return
    text = f"{NAME}: {code} {error.get('message', '')}"
    if code in RETRYABLE_CODES or resp.status >= 500:
        raise RetryableError(text, code=str(code), retry_after=resp.retry_after())
    if code in AUTH_CODES or resp.status in (401, 403):
        raise RetryableError(text, code="auth")
    raise PermanentError(text, code=str(code))


@hookimpl
def stormd_parse_webhook(request, config: Config) -> WebhookResult:
    if request.method == "GET":  # the subscription handshake
        q = request.query
        expected = config.verify_token.get_secret_value()
        if q.get("hub.mode") == "subscribe" and expected and hmac.compare_digest(
                q.get("hub.verify_token", "").encode(), expected.encode()):
            return WebhookResult(delivery_id=None, reply=q.get("hub.challenge", ""))
        raise WebhookRejected("hub.verify_token does not match", 403)
    if not config.app_secret.get_secret_value():
        raise WebhookRejected("providers.meta.app_secret is not configured", 404)
    verify_hub_signature(config.app_secret.get_secret_value(), request.headers, request.body)
    try:
        payload = json.loads(request.body)
        statuses = [s for entry in payload.get("entry", [])
                    for change in entry.get("changes", [])
                    for s in change.get("value", {}).get("statuses", [])]
    except (ValueError, AttributeError, TypeError):
        raise WebhookRejected("not a WhatsApp webhook", 400) from None
    updates = []
    for i, s in enumerate(statuses):
        kind = {"sent": "sent", "delivered": "delivered", "read": "read",
                "failed": "failed"}.get(s.get("status"))
        if kind is None or not s.get("id"):
            continue
        errors = s.get("errors") or [{}]
        updates.append(StatusUpdate(
            external_id=s["id"], kind=kind, occurred_at=_time(s.get("timestamp"), i),
            reason=errors[0].get("title") if kind == "failed" else None,
            error_code=str(errors[0].get("code")) if kind == "failed" else None))
    return WebhookResult(delivery_id=body_digest(request.body), updates=tuple(updates))


def _time(value: Any, index: int) -> datetime | None:
    """A status's Unix `timestamp`; none given, the time of receipt. One no clock can
    hold (Meta sends seconds since 1970) refuses the request."""
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise WebhookRejected(f"statuses[{index}].timestamp is not a Unix time in seconds",
                              400) from None
