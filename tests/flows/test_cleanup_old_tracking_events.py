"""Cleanup under Prefect: the tracker's journal is ingested, then events older than days_to_keep go, and only those."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import EmailTrackingEvent
from db.session import transaction
from flows.cleanup_old_tracking_events import cleanup_old_tracking_events
from tutormax.journal import Journal

NOTHING_INGESTED = {"files": 0, "events": 0, "inserted": 0, "unreadable": 0, "rejected": 0}


@pytest.fixture
def events(db_url, enqueue, now, tmp_path, monkeypatch):
    """Opens 200 days, 90 days and a second, 90 days and 1 day old in the database, and one a day old in the
    tracker's journal; returns a reader of the stored events' ages."""
    monkeypatch.setenv("TUTORMAX_VAR_DIR", str(tmp_path))
    mid = enqueue("a@example.com")
    ages = {"200d": timedelta(days=200), "90d1s": timedelta(days=90, seconds=1), "90d": timedelta(days=90),
            "1d": timedelta(days=1)}
    with transaction(db_url) as s:
        s.add_all(EmailTrackingEvent(message_id=mid, event_type="opened", event_time=now - age, created_at=now - age,
                                     event_key=key) for key, age in ages.items())
    Journal(tmp_path / "journal").append({
        "message_id": mid, "event_type": "opened", "event_time": now - timedelta(days=1), "event_key": "journaled",
        "is_machine": False, "event_data": {}, "created_at": now - timedelta(days=1)})

    def stored() -> list[str]:
        with transaction(db_url) as s:
            return sorted(s.scalars(select(EmailTrackingEvent.event_key)))

    return stored


def test_dry_run_deletes_and_ingests_nothing(run_flow, events, now, tmp_path):
    run = run_flow(cleanup_old_tracking_events, now=now, dry_run=True)
    assert run.result == {"journal": NOTHING_INGESTED, "deleted": 2, "batches": 1,
                          "cutoff": "2026-08-22T15:00:00+00:00", "dry_run": True}
    assert run.name == "cleanup-old-tracking-events 2026-11-20 10:00 EST (dry run)"
    assert run.heading == ("# cleanup-old-tracking-events, Fri 2026-11-20 10:00 EST\n\n"
                           "Covers tracking events from before Sat 2026-08-22 11:00 EDT.\n\n"
                           "Parameters: `days_to_keep=90`, `dry_run=True`, `now=2026-11-20 10:00 EST`.\n\n"
                           "Dry run: nothing was deleted or ingested.")
    assert events() == ["1d", "200d", "90d", "90d1s"]
    assert Journal(tmp_path / "journal").pending() == [tmp_path / "journal" / "events.jsonl"]


def test_old_events_go_once_and_the_journal_is_ingested_first(run_flow, events, now):
    first = run_flow(cleanup_old_tracking_events, now=now)
    assert first.result == {"journal": {**NOTHING_INGESTED, "files": 1, "events": 1, "inserted": 1}, "deleted": 2,
                            "batches": 1, "cutoff": "2026-08-22T15:00:00+00:00", "dry_run": False}
    assert first.name == "cleanup-old-tracking-events 2026-11-20 10:00 EST"
    assert first.heading == ("# cleanup-old-tracking-events, Fri 2026-11-20 10:00 EST\n\n"
                             "Covers tracking events from before Sat 2026-08-22 11:00 EDT.\n\n"
                             "Parameters: `days_to_keep=90`, `dry_run=False`, `now=2026-11-20 10:00 EST`.")
    assert events() == ["1d", "90d", "journaled"]

    again = run_flow(cleanup_old_tracking_events, now=now)
    assert again.result == {"journal": NOTHING_INGESTED, "deleted": 0, "batches": 1,
                            "cutoff": "2026-08-22T15:00:00+00:00", "dry_run": False}
    later = run_flow(cleanup_old_tracking_events, now=now + timedelta(minutes=5))
    # five minutes on, the event exactly 90 days old is past the cut-off too
    assert later.result == {"journal": NOTHING_INGESTED, "deleted": 1, "batches": 1,
                            "cutoff": "2026-08-22T15:05:00+00:00", "dry_run": False}
    assert later.name == "cleanup-old-tracking-events 2026-11-20 10:05 EST"
    assert events() == ["1d", "journaled"]
