"""First-session check-ins: every 30 minutes, "How did it go?" to tutors 2-4 hours after a first session."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import flow

from db import queries
from db.events import Category, Priority
from flows.pipeline import plan_and_send, run_name
from tasks.email_types import SAMPLE_NOW, email_type
from tasks.plan import one_per_row
from tasks.recipients import TUTOR
from tutormax.links import Links


def checkin_context(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    """The check-in's variables: the session, and the link to the three-question survey."""
    return {"tutor_name": meta["tutor_name"], "student_name": meta["student_name"], "subject_name": meta["subject_name"],
            "session_date": datetime.fromisoformat(meta["session_ended_at"]), "survey_url": links.survey(message_id)}


FIRST_SESSION_CHECKIN = email_type(
    "first_session_checkin", category=Category.SESSION_CHECKINS, priority=Priority.HIGH, critical=True,
    context=checkin_context,
    sample=("Ana Rivera", {"session_id": 1, "tutor_id": 3, "tutor_name": "Ana Rivera", "student_name": "Mia",
                           "subject_name": "Algebra",
                           "session_ended_at": (SAMPLE_NOW - timedelta(hours=2)).isoformat()}))

plan_first_session_checkins = one_per_row(
    name="first-session-checkins", query=queries.due_first_session_checkins, email=FIRST_SESSION_CHECKIN,
    audience=TUTOR, entity_type="session", key="session_id", step="checkin", covers="first sessions that ended",
    window=(timedelta(hours=-4), timedelta(hours=-2)))


@flow(name="first-session-checkins", flow_run_name=run_name)
def first_session_checkins(now: datetime | None = None, dry_run: bool = False,
                           batch_size: int | None = None) -> dict[str, Any]:
    """Ask each tutor how a first session went, once per session."""
    return plan_and_send("first-session-checkins", plan_first_session_checkins, [FIRST_SESSION_CHECKIN], now, dry_run,
                         batch_size)
