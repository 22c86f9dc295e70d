"""The run's notion of now: a parameter for backfills and tests, else the wall clock."""

from __future__ import annotations

from datetime import datetime, timezone

from tutormax.settings import get_settings


def resolve_now(now: datetime | None) -> datetime | None:
    """An aware UTC datetime; a naive one is read in TIMEZONE (what an operator types in the UI)."""
    if now is None:
        return None
    if now.tzinfo is None:
        now = now.replace(tzinfo=get_settings().tz)
    return now.astimezone(timezone.utc)
