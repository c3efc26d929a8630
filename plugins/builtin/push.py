"""`fcm`: push notifications through Firebase Cloud Messaging HTTP v1
(POST /v1/projects/<project>/messages:send). Free to send, so routing tries it first.

The access token is an OAuth 2 bearer token for the project's service account (for example
refreshed by the platform and passed in through the environment).

    [providers.fcm]
    project_id = "stormcom-app"
    access_token = "env:FCM_ACCESS_TOKEN"
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from stormd.plugins.api import ProviderInfo
from stormd.plugins.builtin.transport import ProviderConfig, raise_for_status, request
from stormd.plugins.errors import PermanentError, RetryableError
from stormd.plugins.hookspecs import hookimpl

NAME = "fcm"
PERMANENT_FCM_ERRORS = {"UNREGISTERED", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH"}


class Config(ProviderConfig):
    project_id: str
    access_token: SecretStr
    base_url: str = "https://fcm.googleapis.com"


@hookimpl
def stormd_provider() -> ProviderInfo:
    return ProviderInfo(name=NAME, channels=("push",),
                        description="Firebase Cloud Messaging HTTP v1")


@hookimpl
def stormd_validate_config(config: dict[str, Any]) -> Config:
    return Config.model_validate(config)


@hookimpl
async def stormd_send(message, config: Config, http) -> str:
    data = {k: str(v) for k, v in message.data.items() if isinstance(v, (str, int, float))}
    data["stormd_message_id"] = str(message.message_id)
    payload = {"message": {
        "token": message.to,
        "notification": {"title": message.subject or message.data.get("title", ""),
                         "body": message.body},
        "data": data,
    }}
    url = f"{config.base_url}/v1/projects/{config.project_id}/messages:send"
    resp = await request(http, "POST", url, provider=NAME, json=payload,
                         headers={"Authorization": f"Bearer {config.access_token.get_secret_value()}"})
    if resp.status >= 400:
        fcm_code = _fcm_error(resp.text)
        if fcm_code in PERMANENT_FCM_ERRORS:
            raise PermanentError(f"{NAME}: {fcm_code}", code=fcm_code)
        raise_for_status(resp, NAME, fcm_code or resp.text[:200])
    try:
        return json.loads(resp.text)["name"]
    except (ValueError, KeyError, TypeError):
        raise RetryableError(f"{NAME}: unexpected response {resp.text[:200]!r}") from None


def _fcm_error(text: str) -> str | None:
    """The FcmError errorCode (UNREGISTERED, QUOTA_EXCEEDED, ...) or the status."""
    try:
        error = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return None
    for detail in error.get("details", []):
        if detail.get("errorCode"):
            return detail["errorCode"]
    return error.get("status")
