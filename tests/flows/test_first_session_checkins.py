"""First-session check-ins: the 2-4 hour window, first sessions only, no no-shows, once per session."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import EmailMessage
from db.session import transaction
from flows.first_session_checkins import plan_first_session_checkins


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
