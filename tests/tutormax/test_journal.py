"""The journal: events kept while the database was down, ingested later, once; refused lines set aside."""

from __future__ import annotations

from sqlalchemy import select

from db.models import EmailMessage, EmailTrackingEvent
from db.session import transaction


def test_ingesting_the_same_events_twice_counts_them_once(db_url, sent_message, tmp_path):
    from datetime import datetime, timezone

    from tutormax.journal import Journal

    mid = sent_message()
    journal = Journal(tmp_path / "journal")
    event = {"message_id": mid, "event_type": "opened", "event_time": datetime.now(timezone.utc),
             "event_key": "k1", "is_machine": False, "event_data": {}, "created_at": datetime.now(timezone.utc)}
    journal.append(event)
    journal.ingest(db_url)
    journal.append(event)  # e.g. a crash after commit, before the file was deleted
    with open(journal.path, "a") as torn:
        torn.write('{"message_id": 1, "event_ty')  # a torn last line
    result = journal.ingest(db_url)
    assert (result["inserted"], result["unreadable"]) == (0, 1)
    with transaction(db_url) as s:
        assert s.get(EmailMessage, mid).open_count == 1
    (kept,) = journal.rejected()  # the torn line is set aside, not dropped
    assert kept.read_text() == '{"message_id": 1, "event_ty\n'


def _opened(mid: int, key: str) -> dict:
    from datetime import datetime, timezone

    at = datetime.now(timezone.utc)
    return {"message_id": mid, "event_type": "opened", "event_time": at, "event_key": key, "is_machine": False,
            "event_data": {}, "created_at": at}


def test_an_event_the_database_refuses_is_set_aside_and_the_rest_go_in(db_url, sent_message, tmp_path):
    from tutormax.journal import Journal

    mid = sent_message()
    journal = Journal(tmp_path / "journal")
    journal.append(_opened(987654, "gone"))  # e.g. the database was rebuilt since: no such message
    journal.append(_opened(mid, "good"))
    result = journal.ingest(db_url)
    assert (result["events"], result["inserted"], result["rejected"]) == (2, 1, 1)
    assert journal.pending() == []  # not retried (and failed) by every ingest after this one
    (kept,) = journal.rejected()
    assert '"gone"' in kept.read_text() and '"good"' not in kept.read_text()
    with transaction(db_url) as s:
        assert s.get(EmailMessage, mid).open_count == 1


def test_an_append_racing_an_ingest_lands_in_the_next_file_not_the_one_being_read(db_url, sent_message, tmp_path,
                                                                                  monkeypatch):
    from tutormax import journal as journal_module
    from tutormax.journal import Journal

    mid = sent_message()
    journal = Journal(tmp_path / "journal")
    journal.append(_opened(mid, "first"))
    flock, raced = journal_module.fcntl.flock, []

    def flock_after_an_ingest(fd, how):
        # the appender has opened events.jsonl; before it takes its lock, a whole ingest runs
        if how == journal_module.fcntl.LOCK_SH and not raced:
            raced.append(journal.ingest(db_url))
        return flock(fd, how)

    monkeypatch.setattr(journal_module.fcntl, "flock", flock_after_an_ingest)
    journal.append(_opened(mid, "late"))
    monkeypatch.setattr(journal_module.fcntl, "flock", flock)
    assert raced[0]["inserted"] == 1
    assert journal.ingest(db_url)["inserted"] == 1
    with transaction(db_url) as s:
        assert s.get(EmailMessage, mid).open_count == 2


def test_a_journaled_open_too_soon_after_sending_is_flagged_when_ingested(db_url, sent_message, tmp_path):
    from datetime import timedelta

    from tutormax.journal import Journal

    soon, later = sent_message("a@example.com", sent_ago=timedelta(seconds=0.5)), sent_message("b@example.com")
    journal = Journal(tmp_path / "journal")
    journal.append(_opened(soon, "soon"))
    journal.append({**_opened(soon, "apple"), "is_machine": True, "machine_reason": "apple_mpp_user_agent"})
    journal.append(_opened(later, "later"))
    journal.ingest(db_url)
    with transaction(db_url) as s:
        reasons = {e.event_key: (e.is_machine, e.machine_reason) for e in s.scalars(select(EmailTrackingEvent))}
    assert reasons == {"soon": (True, "too_soon_after_send"), "apple": (True, "apple_mpp_user_agent"),
                       "later": (False, None)}


def test_an_open_journaled_before_a_live_one_still_sets_opened_at(db_url, sent_message, tmp_path):
    from datetime import datetime, timedelta, timezone

    from db import tracking
    from tutormax.journal import Journal

    mid = sent_message()
    journaled_at = datetime.now(timezone.utc) - timedelta(minutes=10)
    journal = Journal(tmp_path / "journal")
    journal.append({**_opened(mid, "during-outage"), "event_time": journaled_at})
    with transaction(db_url) as s:  # the database is back, a live open goes in first
        tracking.record_event(s, _opened(mid, "live"))
    journal.ingest(db_url)
    with transaction(db_url) as s:
        message = s.get(EmailMessage, mid)
        assert (message.open_count, message.opened_at) == (2, journaled_at)
