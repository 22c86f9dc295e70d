"""The outbox: concurrent claimers never share a message; dead workers' claims expire."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from db import outbox
from db.models import EmailMessage, EmailTrackingEvent
from db.session import transaction


def test_concurrent_claims_partition_the_queue(db_url, enqueue, now):
    ids = {enqueue(f"r{i}@example.com") for i in range(60)}
    claimed: list[list[int]] = []
    barrier = threading.Barrier(4)

    def claimer(n: int) -> None:
        barrier.wait()
        mine = []
        while True:
            with transaction(db_url) as s:
                batch = outbox.claim(s, now, 7, f"token-{n}")
            if not batch:
                break
            mine.extend(m.message_id for m in batch)
            with transaction(db_url) as s:
                outbox.record(s, [outbox.sent(m, now, "s", "250 ok") for m in batch])
        claimed.append(mine)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [mid for mine in claimed for mid in mine]
    assert sorted(everything) == sorted(ids)  # each message claimed exactly once


def test_a_dead_workers_claim_expires(db_url, enqueue, now):
    mid = enqueue("a@example.com")
    with transaction(db_url) as s:
        assert [m.message_id for m in outbox.claim(s, now, 10, "dead-worker")] == [mid]
    with transaction(db_url) as s:  # still leased: nobody else may take it
        assert outbox.claim(s, now + timedelta(minutes=14), 10, "other") == []
    with transaction(db_url) as s:
        assert [m.message_id for m in outbox.claim(s, now + timedelta(minutes=16), 10, "other")] == [mid]


def test_record_writes_status_and_one_event_per_outcome(db_url, enqueue, now):
    a, b = enqueue("a@example.com"), enqueue("b@example.com")
    with transaction(db_url) as s:
        batch = outbox.claim(s, now, 10, "t")
    with transaction(db_url) as s:
        outbox.record(s, [outbox.sent(batch[0], now, "Subject", "250 ok"),
                          outbox.deferred(batch[1], now, 451, "busy")])
    with transaction(db_url) as s:
        first, second = s.get(EmailMessage, a), s.get(EmailMessage, b)
        events = [(e.message_id, e.event_type) for e in s.scalars(select(EmailTrackingEvent).order_by(EmailTrackingEvent.event_id))]
    assert (first.status, first.subject, first.claim_token) == ("sent", "Subject", None)
    assert (second.status, second.retry_count, second.next_attempt_at) == ("deferred", 1, now + timedelta(seconds=60))
    assert events == [(a, "sent"), (b, "deferred")]


def test_skipped_messages_are_never_claimed(db_url, now):
    planned = outbox.PlannedMessage(
        workflow_type="feedback_reminder", entity_type="session", entity_id=1, step="reminder",
        template_type="feedback_reminder", category="feedback_reminders", recipient_type="parent",
        recipient_email=None, recipient_name=None, recipient_id=1, skip_reason="under_13_no_parent_email")
    with transaction(db_url) as s:
        assert outbox.plan(s, [planned], now).skipped == 1
    with transaction(db_url) as s:
        assert outbox.claim(s, now + timedelta(days=1), 10, "t") == []
