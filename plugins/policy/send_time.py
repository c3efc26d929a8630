"""When a marketing message may go out: never in quiet hours, never in Friday prayer, never
in the daily lunch dip.

Bangladeshi shoppers are asleep 01:00-07:00, at Jumu'ah 13:00-14:00 on Fridays, and at
lunch 13:00-14:00 every day, when messages go unread; a message due inside such a window
is held to the window's end, never dropped. The windows are local times (the store's zone,
else `daemon.timezone`); quiet hours may wrap midnight ("22:00"-"07:00").

    window = send_window(settings)
    at = window.next_allowed(now)          # == now when sending is allowed now
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from stormd.config.settings import Settings

FRIDAY = 4  # date.weekday()
DEFAULT_QUIET_HOURS = ("01:00", "07:00")
DEFAULT_FRIDAY_PRAYER = ("13:00", "14:00")


def parse_clock_time(text: str, what: str = "time") -> time:
    """ "07:00" -> time(7, 0); a clear error naming `what` otherwise."""
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except (ValueError, AttributeError):
        raise ValueError(f'{what}: "{text}" is not a HH:MM time') from None


@dataclass(frozen=True)
class LocalWindow:
    """A daily span of local clock time [start, end); wraps midnight when start > end."""

    start: time
    end: time
    weekday: int | None = None  # only on this weekday (of the day the window starts)

    @classmethod
    def parse(cls, span: tuple[str, str] | list[str], what: str, weekday: int | None = None):
        start, end = (parse_clock_time(s, what) for s in span)
        return cls(start, end, weekday)

    def _starts_on(self, day: date) -> bool:
        return self.weekday is None or day.weekday() == self.weekday

    def end_if_inside(self, local: datetime) -> datetime | None:
        """The local moment this window ends if `local` is inside it, else None."""
        clock, day = local.time(), local.date()
        if self.start == self.end:
            return None
        if self.start < self.end:
            if self._starts_on(day) and self.start <= clock < self.end:
                return datetime.combine(day, self.end, local.tzinfo)
            return None
        if clock >= self.start and self._starts_on(day):
            return datetime.combine(day + timedelta(days=1), self.end, local.tzinfo)
        if clock < self.end and self._starts_on(day - timedelta(days=1)):
            return datetime.combine(day, self.end, local.tzinfo)
        return None


@dataclass(frozen=True)
class SendWindow:
    """The local-time rules for marketing sends in one time zone."""

    tz: ZoneInfo
    blackouts: tuple[LocalWindow, ...]

    def blocked_until(self, t: datetime) -> datetime | None:
        """When the blackout covering `t` ends (aware UTC), or None if `t` is allowed."""
        local = t.astimezone(self.tz)
        for window in self.blackouts:
            end = window.end_if_inside(local)
            if end is not None:
                # Round-trip through UTC so a DST gap cannot produce a moment before `t`.
                return max(end.astimezone(ZoneInfo("UTC")), t)
        return None

    def is_allowed(self, t: datetime) -> bool:
        return self.blocked_until(t) is None

    def next_allowed(self, t: datetime) -> datetime:
        """`t` itself if a message may go out then, else the end of the blackout(s)."""
        if t.tzinfo is None:
            raise ValueError(f"naive datetime {t!r}: send times must be aware")
        for _ in range(8):  # windows may chain (quiet hours ending inside another)
            end = self.blocked_until(t)
            if end is None or end == t:
                return t
            t = end
        return t


def make_send_window(
    tz: ZoneInfo | str,
    quiet_hours: tuple[str, str] | list[str] | None = DEFAULT_QUIET_HOURS,
    friday_prayer: tuple[str, str] | list[str] | None = DEFAULT_FRIDAY_PRAYER,
    lunch: tuple[str, str] | list[str] | None = None,
) -> SendWindow:
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    blackouts = []
    if quiet_hours:
        blackouts.append(LocalWindow.parse(quiet_hours, "limits.quiet_hours"))
    if friday_prayer:
        blackouts.append(LocalWindow.parse(friday_prayer, "limits.friday_prayer", FRIDAY))
    if lunch:
        blackouts.append(LocalWindow.parse(lunch, "limits.lunch"))
    return SendWindow(zone, tuple(blackouts))


def configured_window(settings: Settings, tz: ZoneInfo | str | None = None) -> SendWindow:
    """The blackouts `limits` configures (quiet hours, Friday prayer, lunch), in `tz`
    (default daemon.timezone)."""
    limits = settings.limits
    return make_send_window(tz or settings.tz, limits.quiet_hours,
                            limits.friday_prayer or None, limits.lunch or None)


def send_window(settings: Settings) -> SendWindow:
    """The send window the configuration describes (daemon.timezone, limits.*)."""
    return configured_window(settings)


def next_allowed_moment(
    t: datetime,
    tz: ZoneInfo | str,
    quiet_hours: tuple[str, str] | list[str] | None = DEFAULT_QUIET_HOURS,
    friday_prayer: tuple[str, str] | list[str] | None = DEFAULT_FRIDAY_PRAYER,
) -> datetime:
    """The first moment at or after `t` outside quiet hours and Friday prayer."""
    return make_send_window(tz, quiet_hours, friday_prayer).next_allowed(t)


def local_day_bounds(t: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The start of `t`'s local day and of the next one, as aware UTC: "today" for caps."""
    local = t.astimezone(tz)
    start = datetime.combine(local.date(), time(0), tz)
    end = datetime.combine(local.date() + timedelta(days=1), time(0), tz)
    utc = ZoneInfo("UTC")
    return start.astimezone(utc), end.astimezone(utc)
