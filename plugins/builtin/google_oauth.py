"""OAuth 2 access tokens for a Google service account (the JWT-bearer grant, RFC 7523).

As Google documents for server-to-server calls: sign a JWT with the service account's
private key (RS256, `kid` = private_key_id) whose claims name the account (`iss`), the
scope, the token endpoint (`aud`) and at most an hour of validity; POST it to the
account's `token_uri` as `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`; use the
`access_token` answered until shortly before its `expires_in` runs out. One refresh at a
time: the sends waiting meanwhile share its result.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

from stormd.plugins import RetryableError
from stormd.plugins.builtin.transport import raise_for_status, request

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600  # seconds: Google's maximum
REFRESH_MARGIN = 300  # seconds before expiry a cached token is replaced (at most half its life)
REQUIRED_FIELDS = ("client_email", "private_key", "token_uri")


@dataclass(frozen=True)
class ServiceAccount:
    """The fields of a service-account key file that the grant needs."""

    client_email: str
    private_key: SecretStr
    private_key_id: str
    token_uri: str
    project_id: str | None

    @classmethod
    def from_file(cls, path: str | Path) -> ServiceAccount:
        """Read and check a key file; ValueError says what is wrong (never the key)."""
        try:
            info = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ValueError(f"cannot read the service account file: {exc.strerror}") from None
        except ValueError:
            raise ValueError("the service account file is not JSON") from None
        missing = [f for f in REQUIRED_FIELDS if not info.get(f)]
        if missing:
            raise ValueError(f"the service account file lacks {', '.join(missing)}")
        try:
            load_pem_private_key(info["private_key"].encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("the service account's private_key is not a PEM RSA key") from None
        return cls(client_email=info["client_email"],
                   private_key=SecretStr(info["private_key"]),
                   private_key_id=info.get("private_key_id", ""),
                   token_uri=info["token_uri"], project_id=info.get("project_id"))

    def assertion(self, scope: str, now: float) -> str:
        """The signed JWT presented to the token endpoint."""
        claims = {"iss": self.client_email, "scope": scope, "aud": self.token_uri,
                  "iat": int(now), "exp": int(now) + ASSERTION_LIFETIME}
        headers = {"kid": self.private_key_id} if self.private_key_id else None
        return jwt.encode(claims, self.private_key.get_secret_value(), algorithm="RS256",
                          headers=headers)


class AccessTokens:
    """A cached access token for one service account and scope."""

    def __init__(self, account: ServiceAccount, scope: str, provider: str,
                 clock: Callable[[], float] = time.time):
        self.account, self.scope, self.provider, self.clock = account, scope, provider, clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock: asyncio.Lock | None = None

    async def get(self, http: Any) -> str:
        """A token valid for a while yet, fetching a new one when needed."""
        if self._token is not None and self.clock() < self._refresh_at:
            return self._token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token is None or self.clock() >= self._refresh_at:
                await self._fetch(http)
        return self._token

    def forget(self, token: str) -> None:
        """The API refused `token` (revoked or expired early): fetch anew next time."""
        if self._token == token:
            self._token, self._refresh_at = None, 0.0

    async def _fetch(self, http: Any) -> None:
        now = self.clock()
        form = {"grant_type": GRANT_TYPE, "assertion": self.account.assertion(self.scope, now)}
        resp = await request(http, "POST", self.account.token_uri, provider=self.provider,
                             data=form)
        # A refused grant (400 invalid_grant, 401) means our credentials, not the message:
        # retryable, so the breaker moves traffic on instead of failing customers' sends.
        if resp.status in (400, 401, 403):
            raise RetryableError(f"{self.provider}: token endpoint refused the service "
                                 f"account: {resp.text[:200]}", code="auth")
        raise_for_status(resp, self.provider, resp.text[:200])
        try:
            answer = json.loads(resp.text)
            token, lifetime = str(answer["access_token"]), float(answer["expires_in"])
        except (ValueError, KeyError, TypeError):
            raise RetryableError(f"{self.provider}: unexpected token response "
                                 f"{resp.text[:200]!r}", code="auth") from None
        self._token = token
        self._refresh_at = now + lifetime - min(REFRESH_MARGIN, lifetime / 2)
