"""Retention: the cut-off is exact, deletes go in batches, journal leftovers are ingested first."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from db.models import EmailTrackingEvent
from db.session import transaction
from tasks import cleanup


def _event(url, mid, at):
    with transaction(url) as s:
        s.add(EmailTrackingEvent(message_id=mid, event_type="opened", event_time=at, created_at=at))


def _count(url):
    with transaction(url) as s:
        return s.scalar(select(func.count()).select_from(EmailTrackingEvent))


def test_cut_off(db_url, enqueue, now):
    mid = enqueue("a@example.com")
    _event(db_url, mid, now - timedelta(days=90, seconds=1))  # older than 90 days: goes
    _event(db_url, mid, now - timedelta(days=90))             # exactly 90 days: stays
    _event(db_url, mid, now - timedelta(days=1))
    assert cleanup.delete_old_events.fn(now, 90, dry_run=True)["deleted"] == 1
    assert _count(db_url) == 3
    assert cleanup.delete_old_events.fn(now, 90)["deleted"] == 1
    assert _count(db_url) == 2


def test_deletes_in_batches(db_url, enqueue, now, monkeypatch):
    mid = enqueue("a@example.com")
    for i in range(7):
        _event(db_url, mid, now - timedelta(days=100 + i))
    monkeypatch.setattr(cleanup, "BATCH", 3)
    assert cleanup.delete_old_events.fn(now, 90) == {"deleted": 7, "batches": 3,
                                                    "cutoff": (now - timedelta(days=90)).isoformat()}
    assert _count(db_url) == 0
