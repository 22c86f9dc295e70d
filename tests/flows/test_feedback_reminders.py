"""The feedback-reminder flow under Prefect: end to end, reruns, overlapping runs, a dead server."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from db.models import EmailMessage
from db.session import transaction
from flows.feedback_reminders import feedback_reminders
from tasks import deliver


@pytest.fixture
def due_sessions(platform):
    """Six due sessions: four students, one child with a consenting parent, one child who cannot be reached."""
    tutor = platform.tutor()
    ids = [platform.session(tutor, platform.student(), ended_ago=timedelta(hours=25 + i)) for i in range(4)]
    child = platform.student(age=10, parent_email="parent@example.org", parent_consent=True)
    ids.append(platform.session(tutor, child, ended_ago=timedelta(hours=30)))
    unreachable = platform.student(age=10, parent_email=None)
    ids.append(platform.session(tutor, unreachable, ended_ago=timedelta(hours=30)))
    return ids


def test_run_plans_sends_and_summarizes(prefect_harness, smtp_server, due_sessions, db_url, now):
    summary = feedback_reminders(now=now)
    assert {k: summary[k] for k in ("planned", "sent", "skipped", "deferred", "failed")} == {
        "planned": 5, "sent": 5, "skipped": 1, "deferred": 0, "failed": 0}
    assert len(smtp_server.received) == 5
    with transaction(db_url) as s:
        sent_to = Counter(s.scalars(select(EmailMessage.recipient_type).where(EmailMessage.status == "sent")))
    assert sent_to == {"student": 4, "parent": 1}
    assert "parent@example.org" in {r[0][0] for r in smtp_server.received}


def test_rerun_sends_nothing_twice(prefect_harness, smtp_server, due_sessions, db_url, now):
    feedback_reminders(now=now)
    again = feedback_reminders(now=now)
    later = feedback_reminders(now=now + timedelta(hours=1))
    assert (again["planned"], again["sent"], later["planned"], later["sent"]) == (0, 0, 0, 0)
    assert len(smtp_server.received) == 5
    with transaction(db_url) as s:
        assert s.scalar(select(func.count()).select_from(EmailMessage)) == 6


def test_overlapping_runs_send_each_reminder_once(prefect_harness, smtp_server, platform, db_url, now):
    tutor = platform.tutor()
    for i in range(40):
        platform.session(tutor, platform.student(), ended_ago=timedelta(hours=24, minutes=i))
    results, errors = [], []

    def run():
        try:
            results.append(feedback_reminders(now=now, batch_size=7))
        except Exception as exc:  # pragma: no cover - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    delivered = Counter(r[0][0] for r in smtp_server.received)
    assert len(delivered) == 40 and set(delivered.values()) == {1}
    assert sum(r["sent"] for r in results) == 40
    assert sum(r["planned"] for r in results) == 40


def test_dry_run_sends_and_writes_nothing(prefect_harness, smtp_server, due_sessions, db_url, now):
    summary = feedback_reminders(now=now, dry_run=True)
    assert (summary["planned"], summary["skipped"], summary["sent"]) == (5, 1, 0)
    assert smtp_server.received == []
    with transaction(db_url) as s:
        assert s.scalar(select(func.count()).select_from(EmailMessage)) == 0


def test_dead_server_retries_the_task_then_fails_the_run_keeping_messages_queued(
    prefect_harness, dead_smtp, due_sessions, db_url, now, monkeypatch
):
    attempts = []
    real_connect = deliver.SmtpConnection.connect
    monkeypatch.setattr(deliver.SmtpConnection, "connect", lambda self: attempts.append(1) or real_connect(self))
    monkeypatch.setattr(deliver, "deliver_batch", deliver.deliver_batch.with_options(retry_delay_seconds=0))
    with pytest.raises(RuntimeError, match="delivery stopped"):
        feedback_reminders(now=now)
    assert len(attempts) == 4  # the first try and three task retries
    with transaction(db_url) as s:
        statuses = Counter(s.scalars(select(EmailMessage.status)))
    assert statuses == {"queued": 5, "skipped": 1}


def test_unreachable_database_fails_the_run_with_a_clear_error(prefect_harness, monkeypatch, now):
    import flows.feedback_reminders as module
    from tutormax.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing")
    get_settings.cache_clear()
    monkeypatch.setattr(module, "plan_feedback_reminders",
                        module.plan_feedback_reminders.with_options(retry_delay_seconds=0))
    with pytest.raises(Exception, match="Connection refused|could not connect"):
        feedback_reminders(now=now)
    get_settings.cache_clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
