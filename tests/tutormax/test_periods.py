"""Reporting periods keep local midnight across daylight-saving changes."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from tutormax.periods import previous_month, previous_week

NY = ZoneInfo("America/New_York")


def test_week_across_the_autumn_change_is_169_hours():
    monday = datetime(2026, 11, 2, 9, tzinfo=NY)  # DST ended Sunday Nov 1 at 02:00
    week = previous_week(monday, NY)
    assert (week.first_day, week.last_day) == (date(2026, 10, 26), date(2026, 11, 1))
    assert week.start == datetime(2026, 10, 26, 4, tzinfo=timezone.utc)  # 00:00 EDT
    assert week.end == datetime(2026, 11, 2, 5, tzinfo=timezone.utc)     # 00:00 EST
    assert week.end - week.start == timedelta(hours=169)


def test_week_across_the_spring_change_is_167_hours():
    week = previous_week(datetime(2026, 3, 9, 9, tzinfo=NY), NY)
    assert week.end - week.start == timedelta(hours=167)


def test_any_moment_of_a_week_gives_the_previous_week():
    for day in range(2, 9):
        assert previous_week(datetime(2026, 11, day, 12, tzinfo=NY), NY).first_day == date(2026, 10, 26)


def test_previous_month():
    month = previous_month(datetime(2026, 11, 1, 9, tzinfo=NY), NY)
    assert (month.first_day, month.last_day, month.label) == (date(2026, 10, 1), date(2026, 10, 31), "October 2026")
    assert month.start == datetime(2026, 10, 1, 4, tzinfo=timezone.utc) and month.end == datetime(2026, 11, 1, 4, tzinfo=timezone.utc)
    assert previous_month(datetime(2026, 1, 15, tzinfo=NY), NY).label == "December 2025"
