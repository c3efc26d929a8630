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

from pydantic import SecretStr

from stormd.plugins import Health, RetryableError, hookimpl
from stormd.plugins.builtin.sms_gateway import GatewayConfig, gateway_hooks, refusal
from stormd.plugins.builtin.transport import msisdn, raise_for_status, request, short_id

NAME = "sslwireless"
# Gateway status codes that say our account, not the message, is the problem: count them
# against the provider (failover) rather than failing the customer's message.
ACCOUNT_ERRORS = {"4001", "4003", "4004", "4006", "4016", "4024"}


class Config(GatewayConfig):
    api_token: SecretStr
    base_url: str = "https://smsplus.sslwireless.com"


(stormd_provider, stormd_validate_config, stormd_estimate_cost,
 stormd_parse_webhook) = gateway_hooks(NAME, Config, "SSL Wireless ISMS Plus (Bangladesh)",
                                       idempotent=True)


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
    code, error = str(data.get("status_code", "")), str(data.get("error_message", ""))
    if "duplicate" in error.lower():
        return csms_id  # accepted before: the crash came after the gateway took it
    if code in ACCOUNT_ERRORS:
        raise RetryableError(f"{NAME}: {code} {error}".strip(), code=code)
    raise refusal(NAME, f"{code} {error}", code)


@hookimpl
def stormd_health(config: Config) -> Health:
    return Health(ok=bool(config.api_token.get_secret_value()), detail="api_token set")
