"""Feedback invitations under Prefect: sessions that ended in the last two hours, once each, a child's to the parent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flows.feedback_invitations import feedback_invitations

COVERS = "sessions that ended Fri 2026-11-20 08:00 to Fri 2026-11-20 10:00 EST"


@pytest.fixture
def ended(platform):
    """Two sessions due an invitation (one a child's) and two that are not; the student's id."""
    tutor = platform.tutor()
    student = platform.student()
    child = platform.student(age=10, name="Mia", parent_email="parent@example.org", parent_consent=True)
    platform.session(tutor, student, ended_ago=timedelta(hours=1))
    platform.session(tutor, child, ended_ago=timedelta(hours=2))  # the window's far end is in it
    platform.session(tutor, platform.student(), ended_ago=timedelta(hours=2, minutes=1))
    rated = platform.student()
    platform.feedback(platform.session(tutor, rated, ended_ago=timedelta(minutes=30)), rated)
    return student


def test_dry_run_writes_and_sends_nothing(run_flow, waiting, ended, now, outbox, received, summary_of, heading_of):
    run = run_flow(feedback_invitations, now=now, dry_run=True)
    assert run.figures == summary_of("feedback-invitations", now, COVERS, dry_run=True, planned=2)
    assert run.name == "feedback-invitations 2026-11-20 10:00 EST (dry run)"
    assert run.heading == heading_of("feedback-invitations", "Fri 2026-11-20 10:00 EST", COVERS, dry_run=True)
    assert (outbox(), received()) == ([waiting], [])


def test_each_session_is_invited_once(run_flow, waiting, ended, now, outbox, received, summary_of, heading_of):
    first = run_flow(feedback_invitations, now=now)
    assert first.figures == summary_of("feedback-invitations", now, COVERS, planned=2, sent=2)
    assert first.name == "feedback-invitations 2026-11-20 10:00 EST"
    assert first.heading == heading_of("feedback-invitations", "Fri 2026-11-20 10:00 EST", COVERS)
    sent = [("feedback_invitation", "parent", "parent@example.org", "sent", None),
            ("feedback_invitation", "student", f"student{ended}@example.com", "sent", None), waiting]
    delivered = [("parent@example.org", "How did Mia's Algebra session with Tara Tutor go?"),
                 (f"student{ended}@example.com", "How did your Algebra session with Tara Tutor go?")]
    assert (outbox(), received()) == (sent, delivered)

    again = run_flow(feedback_invitations, now=now)
    later = run_flow(feedback_invitations, now=now + timedelta(minutes=5))
    assert again.figures == summary_of("feedback-invitations", now, COVERS)
    assert later.figures == summary_of("feedback-invitations", now + timedelta(minutes=5),
                                       "sessions that ended Fri 2026-11-20 08:05 to Fri 2026-11-20 10:05 EST")
    assert later.name == "feedback-invitations 2026-11-20 10:05 EST"
    assert (outbox(), received()) == (sent, delivered)
