"""First-session check-ins: the 2-4 hour window, first sessions only, no no-shows, once per session; the flow end
to end under Prefect."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import EmailMessage
from db.session import transaction
from flows.first_session_checkins import first_session_checkins, plan_first_session_checkins

COVERS = "first sessions that ended Fri 2026-11-20 06:00 to Fri 2026-11-20 08:00 EST"


def _messages(url, template_type):
    with transaction(url) as s:
        return list(s.scalars(select(EmailMessage).where(EmailMessage.template_type == template_type)))


@pytest.mark.parametrize(
    ("ended_ago", "number", "status", "due"),
    [
        (timedelta(hours=1, minutes=59), 1, "completed", False),
        (timedelta(hours=2), 1, "completed", True),
        (timedelta(hours=3), 1, "completed", True),
        (timedelta(hours=4), 1, "completed", True),
        (timedelta(hours=4, minutes=1), 1, "completed", False),
        (timedelta(hours=3), 2, "completed", False),
        (timedelta(hours=3), 1, "no_show", False),
    ],
)
def test_checkin_window(platform, db_url, now, ended_ago, number, status, due):
    tutor = platform.tutor("Tara Tutor")
    platform.session(tutor, platform.student(name="Mia"), ended_ago=ended_ago, number=number, status=status)
    assert plan_first_session_checkins.fn(now)["queued"] == (1 if due else 0)
    messages = _messages(db_url, "first_session_checkin")
    assert [(m.recipient_type, m.recipient_id, m.message_metadata["student_name"]) for m in messages] == \
        ([("tutor", tutor, "Mia")] if due else [])
    assert plan_first_session_checkins.fn(now)["queued"] == 0  # rerun


@pytest.fixture
def first_sessions(platform):
    """Two tutors' first sessions due a check-in, and a second session that is not; the tutors' ids."""
    tara, theo = platform.tutor("Tara Tutor"), platform.tutor("Theo Tutor")
    mia, leo = platform.student(name="Mia"), platform.student(name="Leo")
    platform.session(tara, mia, ended_ago=timedelta(hours=3))
    platform.session(theo, leo, ended_ago=timedelta(hours=4))
    platform.session(tara, leo, ended_ago=timedelta(hours=3), number=2)
    return tara, theo


def test_dry_run_writes_and_sends_nothing(run_flow, waiting, first_sessions, now, outbox, received,
                                          summary_of, heading_of):
    run = run_flow(first_session_checkins, now=now, dry_run=True)
    assert run.figures == summary_of("first-session-checkins", now, COVERS, dry_run=True, planned=2)
    assert run.name == "first-session-checkins 2026-11-20 10:00 EST (dry run)"
    assert run.heading == heading_of("first-session-checkins", "Fri 2026-11-20 10:00 EST", COVERS, dry_run=True)
    assert (outbox(), received()) == ([waiting], [])


def test_each_first_session_is_checked_in_on_once(run_flow, waiting, first_sessions, now, outbox, received,
                                                  summary_of, heading_of):
    tara, theo = first_sessions
    first = run_flow(first_session_checkins, now=now)
    assert first.figures == summary_of("first-session-checkins", now, COVERS, planned=2, sent=2)
    assert first.name == "first-session-checkins 2026-11-20 10:00 EST"
    assert first.heading == heading_of("first-session-checkins", "Fri 2026-11-20 10:00 EST", COVERS)
    sent = [waiting, ("first_session_checkin", "tutor", f"tutor{tara}@example.com", "sent", None),
            ("first_session_checkin", "tutor", f"tutor{theo}@example.com", "sent", None)]
    delivered = [(f"tutor{tara}@example.com", "How did your first session with Mia go?"),
                 (f"tutor{theo}@example.com", "How did your first session with Leo go?")]
    assert (outbox(), received()) == (sent, delivered)

    again = run_flow(first_session_checkins, now=now)
    later = run_flow(first_session_checkins, now=now + timedelta(minutes=5))
    assert again.figures == summary_of("first-session-checkins", now, COVERS)
    assert later.figures == summary_of("first-session-checkins", now + timedelta(minutes=5),
                                       "first sessions that ended Fri 2026-11-20 06:05 to Fri 2026-11-20 08:05 EST")
    assert later.name == "first-session-checkins 2026-11-20 10:05 EST"
    assert (outbox(), received()) == (sent, delivered)
