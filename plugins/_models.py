"""The values a channel plugin receives and returns, re-exported by `stormd.plugins`.

Plain frozen dataclasses: a plugin needs nothing of stormd beyond its public face.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Statuses a webhook may report; the pipeline maps them onto the delivery log.
UPDATE_KINDS = ("sent", "delivered", "read", "open", "click", "bounce", "complaint", "failed")


@dataclass(frozen=True)
class ProviderInfo:
    """Who a plugin is: its provider name (the key in `[channels]` and `[providers.<name>]`)
    and the channels it delivers. `idempotent` means the provider itself drops a second
    request carrying the same idempotency key (Resend's Idempotency-Key, SSL Wireless's
    csms_id), so a resend after a crash cannot reach the customer twice. `list_price`
    means the provider charges nothing itself (a dry run: the outbox) and each message is
    recorded at the list price of `campaigns.message_cost`, so costs, KPIs and ROI read
    as they would with real providers."""

    name: str
    channels: tuple[str, ...]
    idempotent: bool = False
    description: str = ""
    list_price: bool = False


@dataclass(frozen=True)
class Outgoing:
    """One message to send. `to` is an e-mail address, an E.164 phone number or a push
    token; `data` carries channel extras (WhatsApp template parameters, push title)."""

    message_id: int
    store_id: str
    channel: str
    to: str
    body: str
    idempotency_key: str
    subject: str | None = None
    html: str | None = None
    template: str | None = None
    locale: str = "bn"
    customer_id: str | None = None
    campaign_id: str | None = None
    trigger: str | None = None
    sender_id: str | None = None
    marketing: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookRequest:
    """An incoming provider webhook exactly as received: verify signatures on `body`
    (the raw bytes), never on re-serialised JSON."""

    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class StatusUpdate:
    """What a webhook says happened to one message the provider knows as `external_id`."""

    external_id: str
    kind: str  # one of UPDATE_KINDS
    occurred_at: datetime | None = None
    url: str | None = None  # click
    reason: str | None = None  # bounce/failure
    error_code: str | None = None


@dataclass(frozen=True)
class WebhookResult:
    """A verified webhook: `delivery_id` identifies the request (a replay carries the same
    one and is refused); `reply` is a body to answer with instead of "ok" (Meta's
    subscription challenge)."""

    delivery_id: str | None
    updates: tuple[StatusUpdate, ...] = ()
    reply: str | None = None


@dataclass(frozen=True)
class Health:
    """A provider's own view of whether it can take traffic (credit left, API reachable)."""

    ok: bool
    detail: str = ""
