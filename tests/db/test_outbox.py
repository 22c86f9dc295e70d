"""The outbox: concurrent claimers never share a message; dead workers' claims expire."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

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


def test_a_dead_workers_claim_expires_on_the_wall_clock(db_url, enqueue, now):
    mid = enqueue("a@example.com")
    wall = datetime.now(timezone.utc)
    lease = timedelta(minutes=15)
    with transaction(db_url) as s:
        assert [m.message_id for m in outbox.claim(s, now, 10, "dead-worker", lease=lease, wall_clock=wall)] == [mid]
    with transaction(db_url) as s:  # still leased: nobody else may take it, whatever `now` they run as of
        assert outbox.claim(s, now + timedelta(days=30), 10, "other", lease=lease,
                            wall_clock=wall + timedelta(minutes=14)) == []
    with transaction(db_url) as s:
        assert [m.message_id for m in outbox.claim(s, now, 10, "other", lease=lease,
                                                   wall_clock=wall + timedelta(minutes=16))] == [mid]


def test_a_backfill_runs_claims_are_leased_like_any_other(db_url, enqueue, now):
    """A run as of last month stamps its claim with the wall clock: a normal run beside it must not take it."""
    mid = enqueue("a@example.com")
    with transaction(db_url) as s:
        assert [m.message_id for m in outbox.claim(s, now - timedelta(days=30), 10, "backfill")] == [mid]
    with transaction(db_url) as s:
        assert outbox.claim(s, datetime.now(timezone.utc), 10, "normal") == []
        (claimed_at,) = s.execute(select(EmailMessage.claimed_at).where(EmailMessage.message_id == mid)).one()
    assert abs(claimed_at - datetime.now(timezone.utc)) < timedelta(minutes=1)


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


def _planned(entity_id: int, **fields) -> outbox.PlannedMessage:
    values = dict(workflow_type="feedback_reminder", entity_type="session", entity_id=entity_id, step="reminder",
                  template_type="feedback_reminder", category="feedback_reminders", recipient_type="student",
                  recipient_email=f"s{entity_id}@example.com", recipient_name="Sam", recipient_id=entity_id)
    values.update(fields)
    return outbox.PlannedMessage(**values)


def test_plan_keeps_every_value_and_counts_each_reason_once(db_url, now):
    from db.models import EmailWorkflowState

    awkward = {"student_name": "Zoë \t\\N \"quoted\"\nnext line \\ end", "sessions": [{"minutes": 45}], "none": None}
    batch = [
        _planned(1, recipient_name="Tab\there \\N back\\slash", metadata=awkward, priority=1),
        _planned(2, recipient_email=None, recipient_name=None, skip_reason="under_13_no_parent_email"),
        _planned(1),  # the same reason twice in one batch
        _planned(3, template_version="v2", ab_variant="b", campaign_id=None),
    ]
    with transaction(db_url) as s:
        assert outbox.plan(s, batch, now) == outbox.PlanCounts(queued=2, skipped=1, already_planned=1)
    with transaction(db_url) as s:
        assert outbox.plan(s, batch, now) == outbox.PlanCounts(already_planned=4)
        rows = {m.idempotency_key: m for m in s.scalars(select(EmailMessage))}
        states = {w.entity_id: w for w in s.scalars(select(EmailWorkflowState))}
    first = rows["feedback_reminder:session:1:reminder"]
    assert (first.recipient_name, first.message_metadata, first.priority) == ("Tab\there \\N back\\slash", awkward, 1)
    assert (first.status, first.scheduled_at, first.retry_count, first.created_at) == ("queued", now, 0, now)
    skipped = rows["feedback_reminder:session:2:reminder"]
    assert (skipped.status, skipped.recipient_email, skipped.skip_reason) == ("skipped", None, "under_13_no_parent_email")
    assert (rows["feedback_reminder:session:3:reminder"].template_version, rows["feedback_reminder:session:3:reminder"].ab_variant) == ("v2", "b")
    assert (states[1].status, states[1].message_id, states[1].context_data) == ("triggered", first.message_id, {})
    assert (states[2].status, states[2].context_data) == ("cancelled", {"skip_reason": "under_13_no_parent_email"})
    assert len(states) == 3
    # message ids follow the planned order, which delivery's claim order relies on
    assert first.message_id < skipped.message_id < rows["feedback_reminder:session:3:reminder"].message_id


def test_two_plans_in_one_transaction_count_each_batch_alone(db_url, now):
    with transaction(db_url) as s:
        assert outbox.plan(s, [_planned(10), _planned(11)], now) == outbox.PlanCounts(queued=2)
        assert outbox.plan(s, [_planned(12)], now) == outbox.PlanCounts(queued=1)
    with transaction(db_url) as s:
        assert outbox.plan(s, [_planned(12), _planned(13)], now) == outbox.PlanCounts(queued=1, already_planned=1)
