"""`outbox`: the default provider. It records and never sends.

The delivery log row (`stormd messages`) is the record: its status becomes `sent` with
this provider's id, so a fresh install shows exactly what would have gone out.
"""

from __future__ import annotations

from stormd.plugins.api import CHANNELS, ProviderInfo
from stormd.plugins.hookspecs import hookimpl

NAME = "outbox"


@hookimpl
def stormd_provider() -> ProviderInfo:
    return ProviderInfo(name=NAME, channels=CHANNELS, idempotent=True,
                        description="records every message in the delivery log; sends nothing")


@hookimpl
def stormd_send(message) -> str:
    return f"outbox-{message.message_id}"
