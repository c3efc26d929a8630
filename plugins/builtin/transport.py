"""What the built-in providers share: how they declare themselves (`declare`), a strict
config base model, and a JSON/form request that turns transport failures and HTTP statuses
into the pipeline's typed errors."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict

from stormd.plugins import PermanentError, ProviderInfo, RetryableError, hookimpl

RETRYABLE_STATUSES = {408, 425, 429, 500, 502, 503, 504}
# Credentials refused: the provider cannot take our traffic at all, so the breaker should
# count it and move traffic to the next provider, not fail the customer's message.
AUTH_STATUSES = {401, 403}


class ProviderConfig(BaseModel):
    """A `[providers.<name>]` section: unknown keys are errors, like the rest of stormd.toml."""

    model_config = ConfigDict(extra="forbid")


def declare(name: str, channels: tuple[str, ...], config_model: type[ProviderConfig],
            description: str, *, idempotent: bool = False, list_price: bool = False):
    """The `stormd_provider` and `stormd_validate_config` hooks of a provider module:

        stormd_provider, stormd_validate_config = declare(NAME, ("sms",), Config, "...")
    """

    @hookimpl
    def stormd_provider() -> ProviderInfo:
        return ProviderInfo(name=name, channels=channels, idempotent=idempotent,
                            description=description, list_price=list_price)

    @hookimpl
    def stormd_validate_config(config: dict[str, Any]) -> ProviderConfig:
        return config_model.model_validate(config)

    return stormd_provider, stormd_validate_config


class Response:
    def __init__(self, status: int, text: str, headers: Mapping[str, str]):
        self.status, self.text, self.headers = status, text, headers

    def retry_after(self) -> float | None:
        value = self.headers.get("Retry-After")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


async def request(http: aiohttp.ClientSession, method: str, url: str, *,
                  provider: str, **kwargs: Any) -> Response:
    """One HTTP call; network failures and timeouts become RetryableError."""
    try:
        async with http.request(method, url, **kwargs) as resp:
            # Provider APIs answer UTF-8 (JSON, XML, text); decoding it ourselves skips
            # aiohttp's per-response charset detection.
            text = (await resp.read()).decode("utf-8", "replace")
            return Response(resp.status, text, resp.headers)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise RetryableError(f"{provider}: {type(exc).__name__}: {exc}",
                             code="network") from exc


def raise_for_status(resp: Response, provider: str, detail: str = "") -> None:
    """Map an HTTP error status onto RetryableError / PermanentError."""
    if resp.status < 400:
        return
    what = f"{provider}: HTTP {resp.status}" + (f": {detail}" if detail else "")
    if resp.status in RETRYABLE_STATUSES or resp.status >= 500:
        raise RetryableError(what, code=str(resp.status), retry_after=resp.retry_after())
    if resp.status in AUTH_STATUSES:
        raise RetryableError(what, code="auth")
    raise PermanentError(what, code=str(resp.status))


def short_id(idempotency_key: str, length: int = 20) -> str:
    """A fixed-length id derived from the idempotency key, for gateways whose client
    reference field is short (SSL Wireless csms_id); the same key gives the same id."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:length]


def msisdn(phone: str) -> str:
    """+8801711000001 -> 8801711000001, the form Bangladeshi gateways expect."""
    digits = "".join(c for c in phone if c.isdigit())
    if digits.startswith("01") and len(digits) == 11:
        digits = "88" + digits
    return digits
