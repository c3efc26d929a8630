"""Quiet hours and Friday prayer hold a send to the window's end (Asia/Dhaka, UTC+6)."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from stormd.plugins.policy.send_time import local_day_bounds, make_send_window, next_allowed_moment

DHAKA = ZoneInfo("Asia/Dhaka")


def dhaka(*args) -> datetime:
    return datetime(*args, tzinfo=DHAKA)


def test_daytime_send_goes_at_once():
    t = dhaka(2026, 11, 24, 10, 30)  # a Tuesday
    assert next_allowed_moment(t, DHAKA) == t


def test_send_in_quiet_hours_waits_until_seven_local():
    t = dhaka(2026, 11, 24, 3, 15)
    assert next_allowed_moment(t, "Asia/Dhaka") == dhaka(2026, 11, 24, 7, 0)
    assert next_allowed_moment(dhaka(2026, 11, 24, 1, 0), DHAKA) == dhaka(2026, 11, 24, 7, 0)
    assert next_allowed_moment(dhaka(2026, 11, 24, 7, 0), DHAKA) == dhaka(2026, 11, 24, 7, 0)


def test_friday_prayer_holds_only_on_friday():
    friday = dhaka(2026, 11, 27, 13, 20)
    assert next_allowed_moment(friday, DHAKA) == dhaka(2026, 11, 27, 14, 0)
    thursday = dhaka(2026, 11, 26, 13, 20)
    assert next_allowed_moment(thursday, DHAKA) == thursday


def test_quiet_hours_wrapping_midnight():
    window = make_send_window(DHAKA, ("22:00", "07:00"), None)
    assert window.next_allowed(dhaka(2026, 11, 24, 23, 0)) == dhaka(2026, 11, 25, 7, 0)
    assert window.next_allowed(dhaka(2026, 11, 25, 2, 0)) == dhaka(2026, 11, 25, 7, 0)
    assert window.is_allowed(dhaka(2026, 11, 25, 21, 59))


def test_result_is_utc_comparable_and_input_in_utc_works():
    t = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)  # 02:00 in Dhaka
    assert next_allowed_moment(t, DHAKA) == datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def test_bad_quiet_hours_named():
    with pytest.raises(ValueError, match="limits.quiet_hours"):
        make_send_window(DHAKA, ("1am", "07:00"))


def test_local_day_bounds_are_dhaka_midnights():
    start, end = local_day_bounds(datetime(2026, 11, 24, 20, 0, tzinfo=UTC), DHAKA)
    assert start == datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
    assert end == datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
