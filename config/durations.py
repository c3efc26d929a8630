"""Duration strings of the configuration ("90s", "15m", "1h", "3d") as timedeltas."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> timedelta:
    """Parse "1h", "90s", "1h30m"; raise ValueError naming the text otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration")
    s = text.strip()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f'"{text}" is not a duration')
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """The shortest exact string for a duration, so `config check` prints what was meant."""
    seconds = value.total_seconds()
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms"
