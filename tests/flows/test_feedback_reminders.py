"""Feedback reminders: the 24-48 hour window, no-shows, COPPA routing, preferences; the flow end to end under
Prefect, reruns, overlapping runs, a dead server."""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from db.models import EmailMessage, EmailPreference, EmailWorkflowState
from db.session import transaction
from flows.feedback_reminders import feedback_reminders, plan_feedback_reminders
from tasks import deliver

COVERS = "sessions that ended Wed 2026-11-18 10:00 to Thu 2026-11-19 10:00 EST"


def _messages(url):
    with transaction(url) as s:
        return list(s.scalars(select(EmailMessage).order_by(EmailMessage.message_id)))


@pytest.mark.parametrize(
    ("ended_ago", "due"),
    [
        (timedelta(hours=23, minutes=59), False),
        (timedelta(hours=24), True),
        (timedelta(hours=36), True),
        (timedelta(hours=48), True),
        (timedelta(hours=48, minutes=1), False),
    ],
)
def test_window_boundaries(platform, db_url, now, ended_ago, due):
    tutor, student = platform.tutor(), platform.student()
    session_id = platform.session(tutor, student, ended_ago=ended_ago)

    counts = plan_feedback_reminders.fn(now)

    assert counts["queued"] == (1 if due else 0)
    messages = _messages(db_url)
    assert [m.message_metadata["session_id"] for m in messages] == ([session_id] if due else [])


@pytest.mark.parametrize("status", ["no_show", "cancelled", "scheduled"])
def test_sessions_that_did_not_happen_get_no_reminder(platform, db_url, now, status):
    platform.session(platform.tutor(), platform.student(), ended_ago=timedelta(hours=30), status=status)
    assert plan_feedback_reminders.fn(now)["queued"] == 0
    assert _messages(db_url) == []


def test_feedback_already_given_means_no_reminder(platform, db_url, now):
    tutor, student = platform.tutor(), platform.student()
    given = platform.session(tutor, student, ended_ago=timedelta(hours=30))
    platform.feedback(given, student)
    owed = platform.session(tutor, student, ended_ago=timedelta(hours=31), number=2)
    plan_feedback_reminders.fn(now)
    assert [m.message_metadata["session_id"] for m in _messages(db_url)] == [owed]


def test_student_13_and_over_gets_it_themselves(platform, db_url, now):
    student = platform.student(age=13, parent_email="parent@example.org", parent_consent=True)
    platform.session(platform.tutor(), student, ended_ago=timedelta(hours=30))
    plan_feedback_reminders.fn(now)
    (message,) = _messages(db_url)
    assert message.recipient_type == "student"
    assert message.recipient_email == f"student{student}@example.com"


def test_under_13_goes_to_the_consenting_parent(platform, db_url, now):
    student = platform.student(age=12, parent_email="parent@example.org", parent_consent=True)
    platform.session(platform.tutor(), student, ended_ago=timedelta(hours=30))
    plan_feedback_reminders.fn(now)
    (message,) = _messages(db_url)
    assert message.status == "queued"
    assert message.recipient_type == "parent"
    assert message.recipient_email == "parent@example.org"
    assert message.message_metadata["is_parent"] is True


@pytest.mark.parametrize(
    ("parent_email", "consent", "reason"),
    [(None, True, "under_13_no_parent_email"), ("parent@example.org", False, "under_13_no_parent_consent")],
)
def test_under_13_without_parent_route_is_skipped_with_reason(platform, db_url, now, parent_email, consent, reason):
    student = platform.student(age=9, parent_email=parent_email, parent_consent=consent)
    platform.session(platform.tutor(), student, ended_ago=timedelta(hours=30))
    counts = plan_feedback_reminders.fn(now)
    assert counts == {"queued": 0, "skipped": 1, "already_planned": 0, "covers": COVERS}
    (message,) = _messages(db_url)
    assert message.status == "skipped"
    assert message.skip_reason == reason
    # the child's own address is never used: the parent's, kept with the reason, or none at all
    assert message.recipient_email == parent_email


@pytest.mark.parametrize(
    ("pref", "reason"),
    [
        ({"feedback_reminders": False}, "category_opt_out"),
        ({"unsubscribed_all": True}, "unsubscribed_all"),
        ({"suppressed": True, "suppression_reason": "hard bounce"}, "suppressed"),
    ],
)
def test_preferences_and_suppressions_are_respected(platform, db_url, now, pref, reason):
    student = platform.student()
    platform.session(platform.tutor(), student, ended_ago=timedelta(hours=30))
    with transaction(db_url) as s:
        s.add(EmailPreference(email=f"student{student}@example.com", **pref))
    plan_feedback_reminders.fn(now)
    (message,) = _messages(db_url)
    assert (message.status, message.skip_reason) == ("skipped", reason)


def test_opting_out_of_another_category_does_not_block_reminders(platform, db_url, now):
    student = platform.student()
    platform.session(platform.tutor(), student, ended_ago=timedelta(hours=30))
    with transaction(db_url) as s:
        s.add(EmailPreference(email=f"student{student}@example.com", marketing_emails=False, weekly_digests=False))
    plan_feedback_reminders.fn(now)
    assert [m.status for m in _messages(db_url)] == ["queued"]


def test_planning_twice_is_a_no_op(platform, db_url, now):
    platform.session(platform.tutor(), platform.student(), ended_ago=timedelta(hours=30))
    assert plan_feedback_reminders.fn(now)["queued"] == 1
    assert plan_feedback_reminders.fn(now + timedelta(hours=1))["queued"] == 0
    assert len(_messages(db_url)) == 1
    with transaction(db_url) as s:
        states = list(s.scalars(select(EmailWorkflowState)))
    assert [(w.workflow_type, w.entity_type, w.step, w.status) for w in states] == [
        ("feedback_reminder", "session", "reminder", "triggered")
    ]


def test_dry_run_writes_nothing(platform, db_url, now):
    platform.session(platform.tutor(), platform.student(), ended_ago=timedelta(hours=30))
    assert plan_feedback_reminders.fn(now, dry_run=True)["queued"] == 1
    assert _messages(db_url) == []


@pytest.fixture
def due_sessions(platform):
    """Six due sessions: four students, one child (Mia) with a consenting parent, one child who cannot be reached.
    The four students' ids."""
    tutor = platform.tutor()
    students = [platform.student() for _ in range(4)]
    for i, student in enumerate(students):
        platform.session(tutor, student, ended_ago=timedelta(hours=25 + i))
    child = platform.student(age=10, name="Mia", parent_email="parent@example.org", parent_consent=True)
    platform.session(tutor, child, ended_ago=timedelta(hours=30))
    unreachable = platform.student(age=10, parent_email=None)
    platform.session(tutor, unreachable, ended_ago=timedelta(hours=30))
    return students


def _sent(students):
    """The outbox and the SMTP server once the six sessions are handled."""
    outbox = [("feedback_reminder", "parent", None, "skipped", "under_13_no_parent_email"),
              ("feedback_reminder", "parent", "parent@example.org", "sent", None)]
    outbox += [("feedback_reminder", "student", f"student{s}@example.com", "sent", None) for s in students]
    delivered = [("parent@example.org", "How was Mia's Algebra session with Tara Tutor?")]
    delivered += [(f"student{s}@example.com", "How was your Algebra session with Tara Tutor?") for s in students]
    return outbox, delivered


def test_run_plans_sends_and_summarizes(run_flow, due_sessions, now, outbox, received, summary_of, heading_of):
    run = run_flow(feedback_reminders, now=now)
    assert run.figures == summary_of("feedback-reminders", now, COVERS, planned=5, skipped=1, sent=5)
    assert run.name == "feedback-reminders 2026-11-20 10:00 EST"
    assert run.heading == heading_of("feedback-reminders", "Fri 2026-11-20 10:00 EST", COVERS)
    assert (outbox(), received()) == _sent(due_sessions)


def test_rerun_sends_nothing_twice(run_flow, due_sessions, now, outbox, received, summary_of):
    run_flow(feedback_reminders, now=now)
    again = run_flow(feedback_reminders, now=now)
    later = run_flow(feedback_reminders, now=now + timedelta(minutes=5))
    assert again.figures == summary_of("feedback-reminders", now, COVERS)
    assert later.figures == summary_of("feedback-reminders", now + timedelta(minutes=5),
                                       "sessions that ended Wed 2026-11-18 10:05 to Thu 2026-11-19 10:05 EST")
    assert later.name == "feedback-reminders 2026-11-20 10:05 EST"
    assert (outbox(), received()) == _sent(due_sessions)


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


def test_dry_run_sends_and_writes_nothing(run_flow, due_sessions, now, outbox, received, summary_of, heading_of):
    run = run_flow(feedback_reminders, now=now, dry_run=True)
    assert run.figures == summary_of("feedback-reminders", now, COVERS, dry_run=True, planned=5, skipped=1)
    assert run.name == "feedback-reminders 2026-11-20 10:00 EST (dry run)"
    assert run.heading == heading_of("feedback-reminders", "Fri 2026-11-20 10:00 EST", COVERS, dry_run=True)
    assert (outbox(), received()) == ([], [])


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

    port = free_port()
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg2://postgres@127.0.0.1:{port}/nothing")
    get_settings.cache_clear()
    monkeypatch.setattr(module, "plan_feedback_reminders",
                        module.plan_feedback_reminders.with_options(retry_delay_seconds=0))
    refused = f'connection to server at "127.0.0.1", port {port} failed: Connection refused'
    with pytest.raises(OperationalError, match=re.escape(refused)):
        feedback_reminders(now=now)
    get_settings.cache_clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
