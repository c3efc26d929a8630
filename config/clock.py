"""The one clock handlers, timers and scoring read, so tests set time instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """Wall-clock time, always aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class SettableClock(Clock):
    """A clock that stands still until a test moves it."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("SettableClock needs an aware datetime")

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("SettableClock needs an aware datetime")
        self._now = when

    def advance(self, delta: timedelta | float) -> datetime:
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self._now
