"""Pigeon SMS: a complete stormd channel plugin (the README's example)."""

import hashlib
import hmac
import json
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, SecretStr

from stormd.plugins import (
    Health,
    PermanentError,
    ProviderInfo,
    RetryableError,
    StatusUpdate,
    WebhookRejected,
    WebhookResult,
    hookimpl,
)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: SecretStr
    base_url: str = "https://api.pigeon.example"
    price: Decimal = Decimal("0.25")


@hookimpl
def stormd_provider():
    return ProviderInfo(name="pigeon", channels=("sms",), idempotent=True)


@hookimpl
def stormd_validate_config(config):
    return Config.model_validate(config)


@hookimpl
async def stormd_send(message, config, http):
    async with http.post(
        f"{config.base_url}/messages",
        json={"to": message.to, "text": message.body, "ref": message.idempotency_key},
        headers={"Authorization": f"Bearer {config.api_key.get_secret_value()}"},
    ) as resp:
        body = await resp.json(content_type=None)
    if resp.status == 429 or resp.status >= 500:
        raise RetryableError(f"pigeon: HTTP {resp.status}", code=str(resp.status))
    if resp.status >= 400:
        raise PermanentError(f"pigeon: {body.get('error')}", code=str(resp.status))
    return body["id"]


@hookimpl
def stormd_estimate_cost(message, config):
    return config.price


@hookimpl
def stormd_parse_webhook(request, config):
    key = config.api_key.get_secret_value().encode()
    expected = hmac.new(key, request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(request.headers.get("X-Pigeon-Signature", ""), expected):
        raise WebhookRejected("bad signature", 401)
    event = json.loads(request.body)
    return WebhookResult(delivery_id=event["event_id"], updates=(
        StatusUpdate(external_id=event["id"], kind=event["status"]),))


@hookimpl
def stormd_health(config):
    return Health(ok=True)
