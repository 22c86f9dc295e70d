"""Reporting periods in local time: weeks start Monday 00:00 and months on the 1st, in TIMEZONE."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC, with the local dates it covers (last_day inclusive) and a label."""

    start: datetime
    end: datetime
    first_day: date
    last_day: date
    label: str

    @property
    def key(self) -> str:
        return self.first_day.isoformat()


def _at_midnight(day: date, tz: ZoneInfo) -> datetime:
    # local midnight, then UTC: a week across a DST change is 167 or 169 hours long, as it should be
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(timezone.utc)


def previous_week(now: datetime, tz: ZoneInfo) -> Period:
    """The last full Monday-to-Sunday week before now, local time."""
    today = now.astimezone(tz).date()
    this_monday = today - timedelta(days=today.weekday())
    first = this_monday - timedelta(days=7)
    return Period(_at_midnight(first, tz), _at_midnight(this_monday, tz), first, this_monday - timedelta(days=1),
                  f"week of {first:%B} {first.day}")


def previous_month(now: datetime, tz: ZoneInfo) -> Period:
    """The last full calendar month before now, local time."""
    today = now.astimezone(tz).date()
    this_first = today.replace(day=1)
    first = (this_first - timedelta(days=1)).replace(day=1)
    return Period(_at_midnight(first, tz), _at_midnight(this_first, tz), first, this_first - timedelta(days=1),
                  f"{first:%B %Y}")


def month_before(period: Period, tz: ZoneInfo) -> Period:
    """The calendar month before a monthly period (for trends)."""
    return previous_month(period.start, tz)
