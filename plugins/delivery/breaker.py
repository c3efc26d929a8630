"""A circuit breaker per provider, so a failing gateway is skipped for the next in its
channel's list (SSL Wireless -> Banglalink) and taken back once a trial send succeeds.

closed: traffic flows; `failures` consecutive retryable failures open it.
open: no traffic until `cooldown` has passed; then half-open.
half-open: one trial send at a time; success closes, failure opens again.
Time comes from the injected clock, so tests move it instead of sleeping.
"""

from __future__ import annotations

from datetime import datetime, timedelta

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    def __init__(self, failures: int, cooldown: timedelta):
        self.threshold = failures
        self.cooldown = cooldown
        self.state = CLOSED
        self.failures = 0
        self.opened_at: datetime | None = None
        self.trial_running = False

    def reopens_at(self) -> datetime | None:
        return None if self.opened_at is None else self.opened_at + self.cooldown

    def allows(self, now: datetime) -> bool:
        """May a send go to this provider now? Starts a trial when the cooldown is over."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and now >= self.reopens_at():
            self.state = HALF_OPEN
        if self.state == HALF_OPEN and not self.trial_running:
            self.trial_running = True
            return True
        return False

    def succeeded(self) -> None:
        self.state, self.failures, self.opened_at, self.trial_running = CLOSED, 0, None, False

    def failed(self, now: datetime) -> None:
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.threshold:
            self.state, self.opened_at = OPEN, now
        self.trial_running = False

    def released(self) -> None:
        """A trial that ended without a verdict (e.g. a permanent error about the message)."""
        self.trial_running = False
