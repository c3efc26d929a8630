"""`banglalink`: SMS through Banglalink's enterprise gateway (form POST
/sendSMS/sendSMS with userID, passwd, sender, msisdn, message).

The gateway answers in text ("Success Count : 1 and Fail Count : 0") and returns no
message id, so the id recorded is derived from the idempotency key.

    [providers.banglalink]
    user_id = "shop"
    password = "env:BANGLALINK_PASSWORD"
    sender_id = "8801900000000"
"""

from __future__ import annotations

import re

from pydantic import SecretStr

from stormd.plugins import hookimpl
from stormd.plugins.builtin.sms_gateway import GatewayConfig, gateway_hooks, refusal
from stormd.plugins.builtin.transport import msisdn, raise_for_status, request, short_id

NAME = "banglalink"
COUNTS = re.compile(r"success\s*count\s*:\s*(\d+).*?fail\s*count\s*:\s*(\d+)",
                    re.IGNORECASE | re.DOTALL)


class Config(GatewayConfig):
    user_id: str
    password: SecretStr
    base_url: str = "https://vas.banglalink.net"


(stormd_provider, stormd_validate_config, stormd_estimate_cost,
 stormd_parse_webhook) = gateway_hooks(NAME, Config, "Banglalink SMS gateway")


@hookimpl
async def stormd_send(message, config: Config, http) -> str:
    form = {"userID": config.user_id, "passwd": config.password.get_secret_value(),
            "sender": message.sender_id or config.sender_id,
            "msisdn": msisdn(message.to), "message": message.body}
    resp = await request(http, "POST", f"{config.base_url}/sendSMS/sendSMS", provider=NAME,
                         data=form)
    raise_for_status(resp, NAME, resp.text[:200])
    counts = COUNTS.search(resp.text)
    if counts and int(counts.group(1)) >= 1:
        return f"bl-{short_id(message.idempotency_key)}"
    raise refusal(NAME, resp.text, "rejected")
