"""`robi`: SMS through Robi's A2P gateway (form POST /ApacheGearWS/SendTextMessage with
Username, Password, From, To, Message); the answer is XML with MessageId and ErrorCode.

    [providers.robi]
    username = "shop"
    password = "env:ROBI_PASSWORD"
    sender_id = "8801847000000"
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pydantic import SecretStr

from stormd.plugins import RetryableError, hookimpl
from stormd.plugins.builtin.sms_gateway import GatewayConfig, gateway_hooks, refusal
from stormd.plugins.builtin.transport import msisdn, raise_for_status, request

NAME = "robi"


class Config(GatewayConfig):
    username: str
    password: SecretStr
    base_url: str = "https://bmpws.robi.com.bd"


(stormd_provider, stormd_validate_config, stormd_estimate_cost,
 stormd_parse_webhook) = gateway_hooks(NAME, Config, "Robi A2P SMS gateway")


def read_service_class(text: str) -> dict[str, str]:
    """The fields of the first <ServiceClass> element, namespaces ignored."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        raise RetryableError(f"{NAME}: unexpected response {text[:200]!r}") from None
    for element in root.iter():
        if element.tag.rpartition("}")[2] == "ServiceClass":
            return {child.tag.rpartition("}")[2]: (child.text or "") for child in element}
    raise RetryableError(f"{NAME}: no ServiceClass in response {text[:200]!r}")


@hookimpl
async def stormd_send(message, config: Config, http) -> str:
    form = {"Username": config.username, "Password": config.password.get_secret_value(),
            "From": message.sender_id or config.sender_id, "To": msisdn(message.to),
            "Message": message.body}
    resp = await request(http, "POST", f"{config.base_url}/ApacheGearWS/SendTextMessage",
                         provider=NAME, data=form)
    raise_for_status(resp, NAME, resp.text[:200])
    fields = read_service_class(resp.text)
    code = fields.get("ErrorCode", "").strip() or "0"
    if code == "0" and fields.get("MessageId"):
        return fields["MessageId"]
    raise refusal(NAME, f"{code} {fields.get('ErrorText') or fields.get('StatusText', '')}",
                  code)
