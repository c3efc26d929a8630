"""Signed preference-centre tokens for the unsubscribe link in every marketing e-mail.

A token names the store, customer and channel and is signed with HMAC-SHA256, so the
preference page can act on it without a login and nobody can forge one for someone else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

from stormd.config.settings import Settings

KEY_FILE = "preferences.key"


def preferences_key(settings: Settings) -> bytes:
    """`delivery.preferences_secret`, else a random key kept in `daemon.data_dir`."""
    if settings.delivery.preferences_secret:
        return settings.delivery.preferences_secret.encode()
    path = Path(settings.daemon.data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(key: bytes, store_id: str, customer_id: str, channel: str = "email") -> str:
    payload = f"{store_id}\n{customer_id}\n{channel}".encode()
    sig = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(sig)}"


def read_token(key: bytes, token: str) -> tuple[str, str, str]:
    """(store_id, customer_id, channel) of a genuine token; ValueError otherwise."""
    try:
        payload_part, sig_part = token.split(".")
        payload, sig = _unb64(payload_part), _unb64(sig_part)
    except ValueError:
        raise ValueError("malformed preference token") from None
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(sig, expected):
        raise ValueError("preference token signature does not match")
    store_id, customer_id, channel = payload.decode().split("\n")
    return store_id, customer_id, channel


def preferences_url(settings: Settings, key: bytes, store_id: str, customer_id: str) -> str:
    token = make_token(key, store_id, customer_id)
    return settings.delivery.preferences_url.format(store=store_id, token=token)
