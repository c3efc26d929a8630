"""`fcm`: push notifications through Firebase Cloud Messaging HTTP v1
(POST /v1/projects/<project>/messages:send). Free to send, so routing tries it first.

Authorised as Google documents for servers: the service account's key file (downloaded
from the Firebase console) signs a JWT-bearer grant for an OAuth 2 access token with the
`firebase.messaging` scope (plugins/builtin/google_oauth.py), cached until shortly before
it expires. The file's path is masked when the configuration is printed; the key itself is
never logged. `access_token` (a token minted elsewhere) is the alternative.

    [providers.fcm]
    credentials_file = "/etc/stormd/firebase-service-account.json"
    project_id = "stormcom-app"     # default: the service account's project_id

FCM's answers: UNREGISTERED (the app was uninstalled or the token expired) is permanent,
and the token is removed from the customer (plugins/delivery/push_tokens.py); INVALID_ARGUMENT and
SENDER_ID_MISMATCH are permanent; 429 QUOTA_EXCEEDED, 500 INTERNAL and 503 UNAVAILABLE are
retried (after Retry-After when given); 401 drops the cached access token and retries.
"""

from __future__ import annotations

import json

from pydantic import PrivateAttr, SecretStr, model_validator

from stormd.plugins import PermanentError, RetryableError, hookimpl
from stormd.plugins.builtin.google_oauth import AccessTokens, ServiceAccount
from stormd.plugins.builtin.transport import (
    ProviderConfig,
    declare,
    raise_for_status,
    request,
)

NAME = "fcm"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
UNREGISTERED = "UNREGISTERED"
PERMANENT_FCM_ERRORS = {UNREGISTERED, "INVALID_ARGUMENT", "SENDER_ID_MISMATCH"}


class Config(ProviderConfig):
    project_id: str | None = None
    credentials_file: SecretStr | None = None  # a service-account key file's path
    access_token: SecretStr | None = None
    base_url: str = "https://fcm.googleapis.com"
    _tokens: AccessTokens | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _credentials(self) -> Config:
        if (self.credentials_file is None) == (self.access_token is None):
            raise ValueError("give credentials_file (a service account key file) or "
                             "access_token, not both")
        if self.credentials_file is not None:
            account = ServiceAccount.from_file(self.credentials_file.get_secret_value())
            self.project_id = self.project_id or account.project_id
            self._tokens = AccessTokens(account, SCOPE, NAME)
        if not self.project_id:
            raise ValueError("project_id is required (the service account file names none)")
        return self

    async def bearer(self, http) -> str:
        if self._tokens is None:
            return self.access_token.get_secret_value()
        return await self._tokens.get(http)

    def refused(self, token: str) -> None:
        if self._tokens is not None:
            self._tokens.forget(token)


stormd_provider, stormd_validate_config = declare(
    NAME, ("push",), Config, "Firebase Cloud Messaging HTTP v1")


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
    token = await config.bearer(http)
    url = f"{config.base_url}/v1/projects/{config.project_id}/messages:send"
    resp = await request(http, "POST", url, provider=NAME, json=payload,
                         headers={"Authorization": f"Bearer {token}"})
    if resp.status >= 400:
        fcm_code = _fcm_error(resp.text)
        if fcm_code in PERMANENT_FCM_ERRORS:
            raise PermanentError(f"{NAME}: {fcm_code}", code=fcm_code)
        if resp.status == 401:
            config.refused(token)
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
