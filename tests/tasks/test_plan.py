"""Planning feedback reminders: the 24-48 hour window, no-shows, COPPA routing, preferences."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import EmailMessage, EmailPreference, EmailWorkflowState
from db.session import transaction
from tasks.plan import plan_feedback_reminders


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
    assert counts == {"queued": 0, "skipped": 1, "already_planned": 0}
    (message,) = _messages(db_url)
    assert message.status == "skipped"
    assert message.skip_reason == reason
    # the child's own address is never used
    assert message.recipient_email in (None, parent_email)


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
