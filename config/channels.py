"""The channels stormd delivers on, named once for every layer.

Members are plain strings (`Channel.SMS == "sms"`), so they read the same in config,
JSON, SQL and metric labels.
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    PUSH = "push"


CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel)
