"""Webhook signature checks, over the raw request bytes.

- Svix (Resend): base64(HMAC-SHA256(base64decode(secret after "whsec_"),
  f"{id}.{timestamp}.{body}")) in `svix-signature: v1,<sig> [v1,<sig> ...]`; the
  timestamp must be within 5 minutes.
- Meta: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>`; the outbox's
  receipts the same in `X-Stormd-Signature`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from stormd.plugins._errors import WebhookRejected

SVIX_TOLERANCE = timedelta(minutes=5)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def svix_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify_svix(secret: str, headers: Mapping[str, str], body: bytes,
                now: datetime) -> str:
    """Check a Svix-signed request; returns its `svix-id` (the replay key)."""
    msg_id = _header(headers, "svix-id")
    timestamp = _header(headers, "svix-timestamp")
    signatures = _header(headers, "svix-signature")
    if not (msg_id and timestamp and signatures):
        raise WebhookRejected("missing svix-id, svix-timestamp or svix-signature", 400)
    try:
        sent = datetime.fromtimestamp(int(timestamp), tz=UTC)
    except (ValueError, OverflowError):
        raise WebhookRejected("svix-timestamp is not a Unix time", 400) from None
    if abs(now - sent) > SVIX_TOLERANCE:
        raise WebhookRejected("svix-timestamp is more than 5 minutes off", 400)
    try:
        expected = svix_signature(secret, msg_id, timestamp, body)
    except (binascii.Error, ValueError):
        raise WebhookRejected("webhook secret is not valid base64", 500) from None
    for candidate in signatures.split():
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected.encode()):
            return msg_id
    raise WebhookRejected("svix signature does not match", 401)


def hub_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_hub_signature(secret: str, headers: Mapping[str, str], body: bytes,
                         header: str = "X-Hub-Signature-256") -> None:
    """Check a `sha256=<hex HMAC>` signature header (Meta's X-Hub-Signature-256, the
    outbox's X-Stormd-Signature) over the bytes received."""
    given = _header(headers, header)
    if not given:
        raise WebhookRejected(f"missing {header}", 401)
    if not hmac.compare_digest(given.strip().lower().encode(),
                               hub_signature(secret, body).encode()):
        raise WebhookRejected(f"{header} does not match", 401)


def verify_token(expected: str, given: str | None) -> None:
    """A shared secret in the callback URL (SMS gateways sign nothing)."""
    if not expected or not given or not hmac.compare_digest(expected.encode(),
                                                            given.encode()):
        raise WebhookRejected("delivery report token does not match", 401)


def body_digest(body: bytes) -> str:
    """A replay key for providers whose webhooks carry no request id."""
    return hashlib.sha256(body).hexdigest()
