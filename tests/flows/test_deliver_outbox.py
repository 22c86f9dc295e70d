"""deliver-outbox, the queue runner: everything due of any type, retries on time, priority first, a budget."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from db.models import EmailMessage
from db.session import transaction
from flows.deliver_outbox import deliver_outbox
from flows.weekly_digests import weekly_digests


def _status(url, mid):
    with transaction(url) as s:
        return s.scalar(select(EmailMessage.status).where(EmailMessage.message_id == mid))


def test_a_deferred_digest_is_retried_by_the_runner_a_minute_later_not_by_its_own_flow(
        prefect_harness, smtp_server, platform, db_url, now):
    tutor = platform.tutor("Tara Tutor")
    platform.session(tutor, platform.student(), ended_ago=timedelta(days=4))  # last week, as of Monday 09:00
    monday = now.replace(day=23, hour=14)  # Monday 2026-11-23 09:00 EST
    smtp_server.faults[f"tutor{tutor}@example.com"] = "defer"
    first = weekly_digests(now=monday)
    assert (first["planned"], first["deferred"], first["sent"]) == (2, 1, 1)
    with transaction(db_url) as s:
        digest = s.scalar(select(EmailMessage.message_id).where(EmailMessage.recipient_id == tutor))
    del smtp_server.faults[f"tutor{tutor}@example.com"]

    early = deliver_outbox(now=monday + timedelta(seconds=59))
    assert (early["sent"], _status(db_url, digest)) == (0, "deferred")
    on_time = deliver_outbox(now=monday + timedelta(seconds=60))
    assert (on_time["sent"], _status(db_url, digest)) == (1, "sent")
    assert [r[0] for r in smtp_server.received][-1] == [f"tutor{tutor}@example.com"]


def test_the_runner_sends_a_type_no_flow_delivers_and_anything_its_run_left(prefect_harness, smtp_server, enqueue,
                                                                           db_url, now):
    # a type whose planning flow never delivers it, and a claim left by a worker that died an hour ago
    orphan = enqueue("orphan@example.com", template_type="monthly_summary")
    abandoned = enqueue("abandoned@example.com")
    with transaction(db_url) as s:
        s.execute(update(EmailMessage).where(EmailMessage.message_id == abandoned).values(
            status="sending", claim_token="dead", claimed_at=now.replace(year=2020)))
    summary = deliver_outbox(now=now)
    assert (summary["sent"], summary["due_after"]) == (2, 0)
    assert {_status(db_url, orphan), _status(db_url, abandoned)} == {"sent"}
    assert sorted(r[0][0] for r in smtp_server.received) == ["abandoned@example.com", "orphan@example.com"]


def test_priority_then_age(prefect_harness, smtp_server, enqueue, db_url, now):
    low_old = enqueue("low-old@example.com", priority=3)
    critical = enqueue("critical@example.com", priority=0)
    medium = enqueue("medium@example.com", priority=2)
    low_new = enqueue("low-new@example.com", priority=3)
    deliver_outbox(now=now)
    order = [r[0][0] for r in smtp_server.received]
    assert order == ["critical@example.com", "medium@example.com", "low-old@example.com", "low-new@example.com"]
    assert {_status(db_url, m) for m in (low_old, critical, medium, low_new)} == {"sent"}


def test_a_dry_run_sends_nothing_and_reports_the_queue(prefect_harness, smtp_server, enqueue, db_url, now):
    mid = enqueue("waiting@example.com")
    summary = deliver_outbox(now=now, dry_run=True)
    assert (summary["sent"], summary["due_after"], _status(db_url, mid)) == (0, 1, "queued")
    assert smtp_server.received == []


def test_the_budget_stops_the_run_between_chunks(prefect_harness, smtp_server, enqueue, db_url, now, monkeypatch):
    from tutormax.settings import get_settings

    monkeypatch.setenv("DELIVERY_BATCH_SIZE", "2")
    get_settings.cache_clear()
    smtp_server.stall_data = 0.4
    ids = [enqueue(f"r{i}@example.com") for i in range(8)]
    summary = deliver_outbox(now=now, budget_seconds=1.0)
    # each batch of two takes 0.8 s: the budget lets one or two batches start, never all four
    assert 2 <= summary["sent"] <= 4 and summary["due_after"] == 8 - summary["sent"]
    assert sum(_status(db_url, m) == "queued" for m in ids) == 8 - summary["sent"]


def test_one_connection_serves_every_batch_of_a_run(prefect_harness, smtp_server, enqueue, db_url, now, monkeypatch):
    from tutormax.settings import get_settings

    monkeypatch.setenv("DELIVERY_BATCH_SIZE", "2")
    get_settings.cache_clear()
    for i in range(5):
        enqueue(f"r{i}@example.com")
    assert deliver_outbox(now=now)["sent"] == 5  # three batches
    assert smtp_server.connections == 1


def test_smtp_connections_caps_the_connections_a_run_holds(prefect_harness, smtp_server, enqueue, db_url, now,
                                                           monkeypatch):
    """Two connections, each sending its own batches side by side; never a third, never a message twice."""
    import asyncio

    from tutormax.settings import get_settings

    monkeypatch.setenv("DELIVERY_BATCH_SIZE", "3")
    monkeypatch.setenv("SMTP_CONNECTIONS", "2")
    get_settings.cache_clear()
    busy, peak = 0, []
    original = smtp_server.handle_DATA

    async def counting(server, session, envelope):
        nonlocal busy
        busy += 1
        peak.append(busy)
        await asyncio.sleep(0.1)
        try:
            return await original(server, session, envelope)
        finally:
            busy -= 1

    smtp_server.handle_DATA = counting
    for i in range(12):
        enqueue(f"r{i}@example.com")
    assert deliver_outbox(now=now)["sent"] == 12
    assert (max(peak), smtp_server.connections) == (2, 2)
    assert sorted(r[0][0] for r in smtp_server.received) == sorted(f"r{i}@example.com" for i in range(12))
