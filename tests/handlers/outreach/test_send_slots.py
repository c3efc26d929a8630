"""Send moments in the store's zone: quiet hours, Friday prayer, the lunch dip, best times,
peak moments and low-response spans, off-peak, and the next allowed day a capped message is
deferred to."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from stormd.handlers.outreach.send_slots import next_allowed_day, send_moment, store_send_window

DHAKA = ZoneInfo("Asia/Dhaka")


def dhaka(day: int, hour: int, minute: int = 0) -> datetime:
    """27 Nov 2026 is a Friday: 26 Thursday, 28 Saturday, 29 Sunday, 30 Monday."""
    return datetime(2026, 11, day, hour, minute, tzinfo=DHAKA)


@pytest.fixture
def settings(settings_factory):
    return settings_factory()


@pytest.mark.parametrize("now, expected", [
    (dhaka(24, 2, 30), dhaka(24, 7, 0)),     # quiet hours: held to 07:00, not skipped
    (dhaka(24, 0, 59), dhaka(24, 0, 59)),    # just before quiet hours
    (dhaka(27, 13, 20), dhaka(27, 14, 0)),   # Friday prayer
    (dhaka(26, 13, 20), dhaka(26, 14, 0)),   # the lunch dip, any day
    (dhaka(24, 12, 0), dhaka(24, 12, 0)),
])
def test_now_is_held_out_of_quiet_hours_and_friday_prayer(settings, now, expected):
    window = store_send_window(settings, DHAKA)
    assert send_moment("now", now, settings, window) == expected


@pytest.mark.parametrize("now, expected", [
    (dhaka(24, 9, 0), dhaka(24, 10, 0)),
    (dhaka(24, 10, 30), dhaka(24, 14, 0)),
    (dhaka(24, 20, 30), dhaka(25, 10, 0)),
    (dhaka(27, 13, 30), dhaka(27, 14, 0)),   # Friday: 14:00 is right after prayer
])
def test_best_time_picks_the_next_slot(settings, now, expected):
    window = store_send_window(settings, DHAKA)
    assert send_moment("best_time", now, settings, window) == expected


def test_best_time_slot_inside_a_blackout_moves_on(settings_factory):
    settings = settings_factory(campaigns={"best_times": ["13:30", "20:00"]})
    window = store_send_window(settings, DHAKA)
    assert send_moment("best_time", dhaka(27, 9, 0), settings, window) == dhaka(27, 20, 0)
    assert send_moment("best_time", dhaka(26, 9, 0), settings, window) == dhaka(26, 20, 0)
    no_lunch = settings_factory(campaigns={"best_times": ["13:30", "20:00"]},
                                limits={"lunch": []})
    window = store_send_window(no_lunch, DHAKA)
    assert send_moment("best_time", dhaka(26, 9, 0), no_lunch, window) == dhaka(26, 13, 30)
    assert send_moment("now", dhaka(26, 13, 20), no_lunch, window) == dhaka(26, 13, 20)


def test_low_response_spans_are_passed_over_and_peak_picks_the_next_peak(settings_factory):
    settings = settings_factory()
    window = store_send_window(settings, DHAKA)
    # Sunday 20:00 and Monday 10:00 are low-response slots: Monday 14:00 is the next good one.
    assert send_moment("best_time", dhaka(29, 18, 0), settings, window) == dhaka(30, 14, 0)
    assert next_allowed_day(dhaka(29, 15), settings, window) == dhaka(30, 14)
    # Peak: Thursday 20:00 (before the weekend), Saturday 10:00.
    assert send_moment("peak", dhaka(24, 12, 0), settings, window) == dhaka(26, 20, 0)
    assert send_moment("peak", dhaka(26, 21, 0), settings, window) == dhaka(28, 10, 0)
    quiet_sat = settings_factory(campaigns={"peak_times": ["sat 10:00"],
                                            "low_response": [["sat 09:00", "sat 11:00"]]})
    # the only peak lies in a low-response span: the next best-time slot instead
    assert send_moment("peak", dhaka(24, 12, 0), quiet_sat,
                       store_send_window(quiet_sat, DHAKA)) == dhaka(24, 14, 0)


def test_off_peak_waits_for_the_night_span_and_respects_quiet_hours(settings_factory):
    settings = settings_factory()
    window = store_send_window(settings, DHAKA)
    assert send_moment("off_peak", dhaka(24, 12, 0), settings, window) == dhaka(24, 22, 0)
    assert send_moment("off_peak", dhaka(24, 23, 0), settings, window) == dhaka(24, 23, 0)
    late = settings_factory(campaigns={"off_peak": ["00:30", "03:00"]})
    # the span runs into quiet hours at 01:00: a send there is held to 07:00
    assert send_moment("off_peak", dhaka(24, 1, 30), late, store_send_window(late, DHAKA)) == dhaka(24, 7, 0)


def test_at_in_the_past_means_now_and_needs_a_zone(settings):
    window = store_send_window(settings, DHAKA)
    assert send_moment("at", dhaka(24, 12), settings, window, at=dhaka(23, 12)) == dhaka(24, 12)
    assert send_moment("at", dhaka(24, 12), settings, window, at=dhaka(25, 3)) == dhaka(25, 7)
    with pytest.raises(ValueError, match="time zone"):
        send_moment("at", dhaka(24, 12), settings, window, at=datetime(2026, 11, 25, 9))
    with pytest.raises(ValueError, match="send_mode"):
        send_moment("whenever", dhaka(24, 12), settings, window)


def test_capped_message_defers_to_the_next_days_first_good_slot(settings):
    window = store_send_window(settings, DHAKA)
    assert next_allowed_day(dhaka(24, 15), settings, window) == dhaka(25, 10)
    assert next_allowed_day(dhaka(26, 23), settings, window) == dhaka(27, 10)  # Friday 10:00
