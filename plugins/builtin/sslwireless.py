"""`sslwireless`: SMS through SSL Wireless ISMS Plus API v3 (POST /api/v3/send-sms).

Each request carries `csms_id`, derived from the idempotency key; the gateway refuses a
second request with the same csms_id, so a resend after a crash cannot go out twice.

    [providers.sslwireless]
    api_token = "env:SSL_API_TOKEN"
    sender_id = "STORMCOM"          # the `sid` (masking) SSL Wireless assigned
    rate_per_segment = 0.35
    dlr_token = "env:SSL_DLR_TOKEN"
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from stormd.plugins.api import Health, ProviderInfo
from stormd.plugins.builtin.sms_gateway import GatewayConfig, parse_delivery_report, sms_cost
from stormd.plugins.builtin.transport import msisdn, raise_for_status, request, short_id
from stormd.plugins.errors import PermanentError, RetryableError
from stormd.plugins.hookspecs import hookimpl

NAME = "sslwireless"
# Gateway status codes that say our account, not the message, is the problem: count them
# against the provider (failover) rather than failing the customer's message.
ACCOUNT_ERRORS = {"4001", "4003", "4004", "4006", "4016", "4024"}


class Config(GatewayConfig):
    api_token: SecretStr
    base_url: str = "https://smsplus.sslwireless.com"


@hookimpl
def stormd_provider() -> ProviderInfo:
    return ProviderInfo(name=NAME, channels=("sms",), idempotent=True,
                        description="SSL Wireless ISMS Plus (Bangladesh)")


@hookimpl
def stormd_validate_config(config: dict[str, Any]) -> Config:
    return Config.model_validate(config)


@hookimpl
def stormd_estimate_cost(message, config: Config):
    return sms_cost(message, config)


@hookimpl
async def stormd_send(message, config: Config, http) -> str:
    csms_id = short_id(message.idempotency_key)
    payload = {"api_token": config.api_token.get_secret_value(), "sid": message.sender_id or config.sender_id,
               "msisdn": msisdn(message.to), "sms": message.body, "csms_id": csms_id}
    resp = await request(http, "POST", f"{config.base_url}/api/v3/send-sms", provider=NAME,
                         json=payload, headers={"Accept": "application/json"})
    raise_for_status(resp, NAME, resp.text[:200])
    try:
        data = json.loads(resp.text)
    except ValueError:
        raise RetryableError(f"{NAME}: unexpected response {resp.text[:200]!r}") from None
    if str(data.get("status")).upper() == "SUCCESS":
        info = (data.get("smsinfo") or [{}])[0]
        return str(info.get("reference_id") or csms_id)
    code = str(data.get("status_code", ""))
    text = f"{NAME}: {code} {data.get('error_message', '')}".strip()
    if "duplicate" in str(data.get("error_message", "")).lower():
        return csms_id  # accepted before: the crash came after the gateway took it
    if code in ACCOUNT_ERRORS or "balance" in text.lower():
        raise RetryableError(text, code=code)
    raise PermanentError(text, code=code)


@hookimpl
def stormd_parse_webhook(request, config: Config):
    return parse_delivery_report(request, config, NAME)


@hookimpl
def stormd_health(config: Config) -> Health:
    return Health(ok=bool(config.api_token.get_secret_value()), detail="api_token set")
