"""When a campaign or automation message should go out, on top of the blackout rules.

`plugins/policy/send_time.py` says when a message may *not* go (quiet hours, Friday prayer,
the lunch dip); this module picks a moment when the merchant asks for one: the next "best
time" slot (10:00, 14:00, 20:00 local), the next peak moment (`campaigns.peak_times`:
Thursday evening before the weekend, Saturday morning), the next off-peak span for
non-urgent sends (providers give night discounts), and the customer's next allowed day
when the daily cap defers a message. Best-time and peak slots inside a low-response span
(`campaigns.low_response`: Sunday evening to Monday noon) are passed over. Every answer is
passed through the send window, so it is always allowed.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from stormd.config.settings import Settings, weekly_moment
from stormd.plugins.policy.send_time import SendWindow, configured_window, parse_clock_time

SEND_MODES = ("now", "at", "best_time", "off_peak", "peak")


def _week_minute(weekday: int, hour: int, minute: int) -> int:
    return (weekday * 24 + hour) * 60 + minute


def low_response(t: datetime, settings: Settings, tz: ZoneInfo) -> bool:
    """Whether local `t` falls in a `campaigns.low_response` span (spans may wrap the week)."""
    local = t.astimezone(tz)
    now = _week_minute(local.weekday(), local.hour, local.minute)
    for start, end in settings.campaigns.low_response:
        a, b = _week_minute(*weekly_moment(start)), _week_minute(*weekly_moment(end))
        if (a <= now < b) if a <= b else (now >= a or now < b):
            return True
    return False


def peak_after(t: datetime, settings: Settings, window: SendWindow) -> datetime:
    """The next `campaigns.peak_times` moment at or after `t` that is allowed and not in a
    low-response span (else the next best-time slot)."""
    local = t.astimezone(window.tz)
    candidates = []
    for moment in settings.campaigns.peak_times:
        weekday, hour, minute = weekly_moment(moment)
        for weeks in range(3):
            day = local.date() + timedelta(days=(weekday - local.weekday()) % 7 + 7 * weeks)
            at = datetime.combine(day, time(hour, minute), window.tz)
            if at >= local and window.is_allowed(at) and not low_response(at, settings,
                                                                         window.tz):
                candidates.append(at)
                break
    if not candidates:
        return best_time_after(t, settings, window)
    return min(candidates).astimezone(ZoneInfo("UTC"))


def store_send_window(settings: Settings, tz: str | ZoneInfo | None = None) -> SendWindow:
    """The blackout rules in the recipient's zone (the store's; default daemon.timezone)."""
    return configured_window(settings, tz)


def _next_local(t: datetime, tz: ZoneInfo, slots: list[time]) -> datetime:
    """The first of the daily local `slots` at or after `t`."""
    local = t.astimezone(tz)
    for days in range(3):
        day = local.date() + timedelta(days=days)
        for slot in sorted(slots):
            candidate = datetime.combine(day, slot, tz)
            if candidate >= local:
                return candidate.astimezone(ZoneInfo("UTC"))
    raise AssertionError("unreachable: a daily slot always exists within two days")


def best_time_after(t: datetime, settings: Settings, window: SendWindow) -> datetime:
    """The next best-time slot at or after `t` that is not blacked out nor in a
    low-response span (a 14:00 slot right at the end of lunch is fine; a slot inside a
    blackout, or Sunday 20:00 and Monday 10:00, moves to the next)."""
    slots = [parse_clock_time(s, "campaigns.best_times") for s in settings.campaigns.best_times]
    at = _next_local(t, window.tz, slots)
    for _ in range(30):
        if window.is_allowed(at) and not low_response(at, settings, window.tz):
            return at
        at = _next_local(at + timedelta(minutes=1), window.tz, slots)
    return window.next_allowed(at)


def off_peak_after(t: datetime, settings: Settings, window: SendWindow) -> datetime:
    """`t` if it is already inside the off-peak span, else the span's next start."""
    start, end = (parse_clock_time(s, "campaigns.off_peak") for s in settings.campaigns.off_peak)
    local = t.astimezone(window.tz).time()
    inside = (start <= local < end) if start < end else (local >= start or local < end)
    at = t if inside else _next_local(t, window.tz, [start])
    return window.next_allowed(at)


def send_moment(mode: str, now: datetime, settings: Settings, window: SendWindow,
                at: datetime | None = None) -> datetime:
    """The allowed moment a send in `mode` starts: "now", "at" a given time, the next
    "best_time" slot, the next "peak" moment, or "off_peak". Never in the past, never in
    a blackout."""
    if mode not in SEND_MODES:
        raise ValueError(f"send_mode {mode!r} is not one of {', '.join(SEND_MODES)}")
    if mode == "at":
        if at is None:
            raise ValueError("send_mode 'at' needs scheduled_at")
        if at.tzinfo is None:
            raise ValueError("scheduled_at needs a time zone")
        base = max(at, now)
    else:
        base = now
    if mode == "best_time":
        return best_time_after(base, settings, window)
    if mode == "off_peak":
        return off_peak_after(base, settings, window)
    if mode == "peak":
        return peak_after(base, settings, window)
    return window.next_allowed(base)


def next_allowed_day(t: datetime, settings: Settings, window: SendWindow) -> datetime:
    """Where a capped message is deferred to: the first best-time slot of the customer's
    next local day (so it lands as that day's first message, at a good hour)."""
    local = t.astimezone(window.tz)
    tomorrow = datetime.combine(local.date() + timedelta(days=1), time(0), window.tz)
    return best_time_after(tomorrow.astimezone(ZoneInfo("UTC")), settings, window)
